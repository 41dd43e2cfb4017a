package tests_go

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/core"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// The compiler checks that the backend fits the engine's interfaces.
var (
	_ core.Backend     = (*redis.Backend)(nil)
	_ core.KeyBorrower = (*redis.Backend)(nil)
)

// §9: one script call per request, by EVALSHA, whatever the number of keys;
// never EVAL (which would send the whole script) once the script is loaded.
func TestRedisOneEvalshaPerEvaluate(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	inspect := srv.Client(t)
	ctx := context.Background()
	p := uniquePrefix(t)
	limits := []algorithms.Limit{{Limit: 100, WindowUS: 60 * secondUS}, {Limit: 100, WindowUS: 60 * secondUS},
		{Limit: 100, WindowUS: 60 * secondUS}}
	kinds := []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket}
	// Load every script once (a fresh server answers NOSCRIPT first).
	for _, kind := range kinds {
		evalOne(t, b, kind, []string{p + ":" + kind.String() + ":warm"}, limits[:1], 0)
	}
	if err := inspect.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const perKind = 7
	calls := 0
	for _, kind := range kinds {
		for i := 0; i < perKind; i++ {
			n := 1 + i%3
			tag := p + ":" + kind.String()
			keys := []string{tag + ":u", tag + ":t", tag + ":x"}[:n]
			evalOne(t, b, kind, keys, limits[:n], 0)
			calls++
		}
	}
	stats := commandStats(t, inspect)
	if stats["evalsha"] != int64(calls) {
		t.Errorf("%d Evaluate calls made %d EVALSHA calls, want exactly one each", calls, stats["evalsha"])
	}
	for _, cmd := range []string{"eval", "script|load", "evalsha_ro", "eval_ro"} {
		if stats[cmd] != 0 {
			t.Errorf("%d %s calls with every script loaded, want 0", stats[cmd], cmd)
		}
	}
}

// After SCRIPT FLUSH (or a restart) the backend reloads the script once and
// the request that met NOSCRIPT is evaluated exactly once.
func TestRedisNoscriptRecovery(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	inspect := srv.Client(t)
	ctx := context.Background()
	key := uniquePrefix(t) + ":fw:user:n"
	limit := []algorithms.Limit{{Limit: 10, WindowUS: 60 * secondUS}}
	now := testEpochUS()

	if _, out := evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now); out[0].Remaining != 9 {
		t.Fatalf("first request left %d, want 9", out[0].Remaining)
	}
	if err := inspect.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := inspect.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	admitted, out := evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now)
	if !admitted || out[0].Remaining != 8 {
		t.Fatalf("after SCRIPT FLUSH: admitted=%v remaining=%d, want admitted with 8 left (counted once)",
			admitted, out[0].Remaining)
	}
	stats := commandStats(t, inspect)
	if stats["script|load"] != 1 || stats["eval"] != 0 {
		t.Errorf("recovery made %d SCRIPT LOAD and %d EVAL calls, want 1 and 0", stats["script|load"], stats["eval"])
	}
	exists, err := inspect.ScriptExists(ctx, redis.ScriptSHA(algorithms.FixedWindow)).Result()
	if err != nil || len(exists) != 1 || !exists[0] {
		t.Fatalf("script not cached after recovery: %v %v", exists, err)
	}
	evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now)
	if got := commandStats(t, inspect)["script|load"]; got != 1 {
		t.Errorf("%d SCRIPT LOAD calls after recovery, want no more", got)
	}
}

// A script error (here WRONGTYPE: the key holds a string) is ErrUnavailable
// with the error class only: neither the key nor the server's text, which
// quotes script details, reaches the message.
func TestRedisServerErrorIsSanitised(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	inspect := srv.Client(t)
	ctx := context.Background()
	key := uniquePrefix(t) + ":fw:user:alice@example.com"
	if err := inspect.Set(ctx, key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	out := make([]algorithms.Outcome, 1)
	_, err := b.of(algorithms.FixedWindow).Evaluate(ctx, []string{key}, []algorithms.Limit{{Limit: 1, WindowUS: secondUS}},
		0, out)
	if !errors.Is(err, redis.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "alice") || strings.Contains(msg, "example.com") || strings.Contains(msg, "script:") {
		t.Errorf("error leaks request data: %q", msg)
	}
	if msg != "redis backend unavailable: evalsha: server error WRONGTYPE" {
		t.Errorf("error %q, want the WRONGTYPE class", msg)
	}
	if v, _ := inspect.Get(ctx, key).Result(); v != "not a hash" {
		t.Errorf("the failing script changed the key to %q", v)
	}
}

// Many goroutines share one Backend (the pyext layer runs each async
// submission in its own goroutine): the pool serves them and the script keeps
// the count exact.
func TestRedisConcurrentEvaluate(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{PoolSize: 8})
	const goroutines, perG, limit = 40, 25, 300
	for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		t.Run(kind.String(), func(t *testing.T) {
			key := uniquePrefix(t) + ":" + kind.String() + ":tool:shared"
			limits := []algorithms.Limit{{Limit: limit, WindowUS: 3600 * secondUS}}
			now := testEpochUS()
			var admitted atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out := make([]algorithms.Outcome, 1)
					for i := 0; i < perG; i++ {
						ok, err := b.of(kind).Evaluate(context.Background(), []string{key}, limits, now, out)
						if err != nil {
							errs <- err
							return
						}
						if ok {
							admitted.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("concurrent Evaluate: %v", err)
			}
			if got := admitted.Load(); got != limit {
				t.Errorf("%d of %d concurrent requests admitted, want exactly the limit %d", got,
					goroutines*perG, limit)
			}
		})
	}
}

// URL forms: password in the URL (requirepass), a wrong password (an error
// that names the class but never the secret), and a unix socket.
func TestRedisURLForms(t *testing.T) {
	const secret = "s3cr3t-pw"
	authSrv := redistest.Start(t, "--requirepass", secret)
	sockDir := t.TempDir()
	sock := filepath.Join(sockDir, "redis.sock")
	unixSrv := redistest.Start(t, "--unixsocket", sock, "--unixsocketperm", "700")
	limits := []algorithms.Limit{{Limit: 5, WindowUS: secondUS}}

	t.Run("password", func(t *testing.T) {
		b := newRedisBackend(t, "redis://:"+secret+"@"+authSrv.Addr+"/0", redis.Options{})
		if admitted, _ := evalOne(t, b, algorithms.TokenBucket, []string{uniquePrefix(t)}, limits, 0); !admitted {
			t.Fatal("first request blocked")
		}
	})
	t.Run("default user and password", func(t *testing.T) {
		b := newRedisBackend(t, "redis://default:"+secret+"@"+authSrv.Addr, redis.Options{})
		if admitted, _ := evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, limits, 0); !admitted {
			t.Fatal("first request blocked")
		}
	})
	for name, u := range map[string]string{
		"wrong password": "redis://:wrong-pw@" + authSrv.Addr,
		"no password":    "redis://" + authSrv.Addr,
	} {
		t.Run(name, func(t *testing.T) {
			b := newRedisBackend(t, u, redis.Options{})
			out := make([]algorithms.Outcome, 1)
			_, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{uniquePrefix(t)}, limits, 0, out)
			if !errors.Is(err, redis.ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), "wrong-pw") || strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks a password: %q", err)
			}
			t.Logf("refused with %q", err)
			if !strings.Contains(err.Error(), "server error") {
				t.Errorf("error %q does not name the server's refusal", err)
			}
		})
	}
	t.Run("unix socket", func(t *testing.T) {
		b := newRedisBackend(t, "unix://"+sock+"?db=2", redis.Options{})
		key := uniquePrefix(t)
		if admitted, _ := evalOne(t, b, algorithms.SlidingWindow, []string{key}, limits, 0); !admitted {
			t.Fatal("first request blocked")
		}
		// The state went to the database named in the URL.
		ctx := context.Background()
		conn := unixSrv.Client(t).Conn()
		defer func() { _ = conn.Close() }()
		if err := conn.Select(ctx, 2).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := conn.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("key in db 2: exists=%d err=%v, want 1", n, err)
		}
	})
}
