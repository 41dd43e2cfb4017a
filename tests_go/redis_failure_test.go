package tests_go

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// slack absorbs scheduling noise (2 cores, -race) in the upper time bounds.
const slack = 250 * time.Millisecond

var oneLimit = []algorithms.Limit{{Limit: 1000, WindowUS: 60 * secondUS}}

// evalErr runs one request expected to fail and returns how long the call
// took and its error.
func evalErr(t *testing.T, b redisBackends, key string) (time.Duration, error) {
	t.Helper()
	out := make([]algorithms.Outcome, 1)
	start := time.Now()
	_, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{key}, oneLimit, 0, out)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Evaluate succeeded against a failed Redis")
	}
	if !errors.Is(err, redis.ErrUnavailable) {
		t.Fatalf("error %v does not wrap ErrUnavailable", err)
	}
	return took, err
}

// A stopped Redis fails fast: a refused dial costs no timeout, and the pooled
// connection it left behind fails on first use without a retry.
func TestRedisStoppedIsUnavailableQuickly(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{ConnectTimeout: 300 * time.Millisecond,
		CommandTimeout: 300 * time.Millisecond, BreakerFailures: 100})
	key := uniquePrefix(t)
	evalOne(t, b, algorithms.FixedWindow, []string{key}, oneLimit, 0)
	srv.Stop()
	for i := 0; i < 3; i++ {
		took, err := evalErr(t, b, key)
		t.Logf("call %d: %v after %v", i, err, took)
		if took > 100*time.Millisecond {
			t.Errorf("call %d took %v against a stopped server, want no timeout wait", i, took)
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("error leaks the key: %q", err)
		}
	}
}

// A server that accepts TCP but never answers (the fault facts.md records)
// fails within ConnectTimeout + CommandTimeout, not after go-redis's default
// seconds or several retries.
func TestRedisHungServerTimesOut(t *testing.T) {
	hung := redistest.NewHungListener(t)
	const connect, command = 100 * time.Millisecond, 150 * time.Millisecond
	b := newRedisBackend(t, hung.URL(), redis.Options{ConnectTimeout: connect, CommandTimeout: command,
		BreakerFailures: 100})
	for i := 0; i < 3; i++ {
		took, err := evalErr(t, b, "k")
		t.Logf("call %d: %v after %v", i, err, took)
		if !strings.HasSuffix(err.Error(), ": timeout") {
			t.Errorf("error %q, want a timeout", err)
		}
		if took < command-20*time.Millisecond || took > connect+command+slack {
			t.Errorf("call %d took %v, want about CommandTimeout (%v) and at most %v", i, took, command,
				connect+command)
		}
	}
	// One connection per call: no retry opened a second one.
	if got := hung.Accepted(); got != 3 {
		t.Errorf("the hung server accepted %d connections for 3 calls, want 3 (no retries)", got)
	}
}

// §8: after BreakerFailures consecutive failures the breaker opens; calls then
// fail at once without any connection attempt until the cooldown ends, when
// exactly one probe goes out.
func TestRedisBreakerFailsFastWithoutConnecting(t *testing.T) {
	hung := redistest.NewHungListener(t)
	const failures, cooldown = 3, 600 * time.Millisecond
	b := newRedisBackend(t, hung.URL(), redis.Options{ConnectTimeout: 50 * time.Millisecond,
		CommandTimeout: 50 * time.Millisecond, BreakerFailures: failures, BreakerCooldown: cooldown})
	for i := 0; i < failures; i++ {
		if _, err := evalErr(t, b, "k"); errors.Is(err, redis.ErrBreakerOpen) {
			t.Fatalf("breaker open after %d failures, want %d", i, failures)
		}
	}
	opened := time.Now()
	accepted := hung.Accepted()

	const fastCalls = 200
	start := time.Now()
	for i := 0; i < fastCalls; i++ {
		if _, err := evalErr(t, b, "k"); !errors.Is(err, redis.ErrBreakerOpen) {
			t.Fatalf("call %d while open: %v, want ErrBreakerOpen", i, err)
		}
	}
	took := time.Since(start)
	// Connections are what prove no I/O (checked below); the time bound only
	// says "at once", with room for -race on a loaded 2-core box.
	if took > 200*time.Millisecond {
		t.Errorf("%d calls with the breaker open took %v, want them to fail at once", fastCalls, took)
	}
	if got := hung.Accepted(); got != accepted {
		t.Errorf("%d connections were made while the breaker was open, want 0", got-accepted)
	}
	if time.Since(opened) >= cooldown {
		t.Fatal("the test was too slow to observe the open breaker")
	}

	time.Sleep(cooldown - time.Since(opened) + 20*time.Millisecond)
	// The probe goes to the server (one connection) and fails: re-opened.
	if _, err := evalErr(t, b, "k"); errors.Is(err, redis.ErrBreakerOpen) {
		t.Fatalf("no probe after the cooldown: %v", err)
	}
	if got := hung.Accepted(); got != accepted+1 {
		t.Errorf("the probe made %d connections, want 1", got-accepted)
	}
	if _, err := evalErr(t, b, "k"); !errors.Is(err, redis.ErrBreakerOpen) {
		t.Errorf("after a failed probe: %v, want the breaker open again", err)
	}
}

// A restarted Redis (empty data, empty script cache) is used again once the
// cooldown lets a probe through, and limits are enforced again.
func TestRedisRestartEnforcesAfterCooldown(t *testing.T) {
	srv := redistest.Start(t)
	const cooldown = 400 * time.Millisecond
	// Generous timeouts: a stopped server refuses at once, and the probe after the restart must
	// not fail only because a loaded machine was slow to connect.
	b := newRedisBackend(t, srv.URL(), redis.Options{ConnectTimeout: time.Second,
		CommandTimeout: time.Second, BreakerFailures: 2, BreakerCooldown: cooldown})
	key := uniquePrefix(t) + ":fw:user:r"
	limit := []algorithms.Limit{{Limit: 1, WindowUS: 3600 * secondUS}}
	now := testEpochUS()
	if admitted, _ := evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now); !admitted {
		t.Fatal("first request blocked")
	}

	srv.Stop()
	evalErr(t, b, key)
	evalErr(t, b, key)
	opened := time.Now()
	srv.Restart(t)
	if time.Since(opened) < cooldown {
		// Redis is back, but the breaker keeps failing fast until the cooldown ends.
		if _, err := evalErr(t, b, key); !errors.Is(err, redis.ErrBreakerOpen) {
			t.Fatalf("during the cooldown: %v, want ErrBreakerOpen", err)
		}
	}
	time.Sleep(time.Until(opened.Add(cooldown + 20*time.Millisecond)))

	// The probe reloads the script (NOSCRIPT on the new server) and succeeds;
	// the restarted server has no state, so the limit starts afresh.
	if admitted, out := evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now); !admitted {
		t.Fatalf("probe after restart blocked: %+v", out[0])
	}
	admitted, out := evalOne(t, b, algorithms.FixedWindow, []string{key}, limit, now)
	if admitted || out[0].RetryAfterUS <= 0 {
		t.Fatalf("second request after restart: admitted=%v %+v, want blocked (limit 1)", admitted, out[0])
	}
}

// A caller's cancellation is reported as context.Canceled (and ErrUnavailable)
// and does not count towards opening the breaker. (go-redis bounds a read by
// the context's deadline, not by its cancellation, so a call already waiting
// on a hung socket still ends by the timeout; this covers a context canceled
// before the call reaches the network.)
func TestRedisCallerCancellationDoesNotOpenBreaker(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{BreakerFailures: 1})
	out := make([]algorithms.Outcome, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 3; i++ {
		_, err := b.of(algorithms.FixedWindow).Evaluate(ctx, []string{uniquePrefix(t)}, oneLimit, 0, out)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, redis.ErrUnavailable) {
			t.Fatalf("call %d: %v, want context.Canceled wrapped as ErrUnavailable", i, err)
		}
	}
	// With BreakerFailures 1, a counted failure would have opened the breaker.
	if admitted, _ := evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, oneLimit, 0); !admitted {
		t.Fatal("request after cancellations blocked")
	}
}
