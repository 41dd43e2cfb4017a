package tests_go

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// Auto-pipelining (docs/redis-backend.md, "Pipelining"): many concurrent
// calls on standalone Redis, whatever pipelines they ride in, each run their
// script exactly once.

// concurrently runs calls calls of fn in width goroutines and returns the
// number that returned admitted and the errors.
func concurrently(width, calls int, fn func(i int) (bool, error)) (admitted int64, errs []error) {
	var n atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for g := 0; g < width; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= calls {
					return
				}
				ok, err := fn(i)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				if ok {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), errs
}

func TestRedisPipelineExactlyOncePerCall(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	for _, tc := range []struct {
		name         string
		kind         algorithms.Kind
		width, calls int
		limit        int64
	}{
		{"fixed, 256 wide, limit reached", algorithms.FixedWindow, 256, 3000, 1000},
		{"sliding, 64 wide, limit reached", algorithms.SlidingWindow, 64, 1500, 700},
		{"token bucket, 128 wide, limit reached", algorithms.TokenBucket, 128, 2000, 900},
		{"fixed, 256 wide, limit not reached", algorithms.FixedWindow, 256, 2000, 1_000_000},
		{"one at a time", algorithms.FixedWindow, 1, 50, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uniquePrefix(t)
			limits := []algorithms.Limit{{Limit: tc.limit, WindowUS: 3600 * secondUS}}
			now := testEpochUS()
			admitted, errs := concurrently(tc.width, tc.calls, func(int) (bool, error) {
				out := make([]algorithms.Outcome, 1)
				return b.of(tc.kind).Evaluate(context.Background(), []string{key}, limits, now, out)
			})
			if len(errs) > 0 {
				t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
			}
			want := min(tc.limit, int64(tc.calls))
			if admitted != want {
				t.Fatalf("admitted %d, want %d (a lost or repeated script run)", admitted, want)
			}
			// The next call sees exactly calls units consumed (none twice).
			ok, out := evalOne(t, b, tc.kind, []string{key}, limits, now)
			wantRemaining := max(tc.limit-int64(tc.calls)-1, 0)
			if ok != (int64(tc.calls) < tc.limit) || out[0].Remaining != wantRemaining {
				t.Fatalf("after %d calls: admitted %v remaining %d, want %v and %d",
					tc.calls, ok, out[0].Remaining, int64(tc.calls) < tc.limit, wantRemaining)
			}
		})
	}
}

// A SCRIPT FLUSH while pipelines are in flight: the calls that get NOSCRIPT
// reload the script and run once more; none fails and none runs twice. (One
// flush: a second one between a reload and its retry would fail that call,
// as it would without pipelining: the retry is once.)
func TestRedisPipelineNoScriptMidPipeline(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	key := uniquePrefix(t)
	const calls, limit = 6000, 1_000_000
	limits := []algorithms.Limit{{Limit: limit, WindowUS: 3600 * secondUS}}
	now := testEpochUS()
	var started atomic.Int64
	flushed := make(chan error, 1)
	go func() {
		for started.Load() < calls/3 {
			time.Sleep(time.Millisecond)
		}
		flushed <- admin.ScriptFlush(context.Background()).Err()
	}()
	before := commandStats(t, admin)["script|load"]
	_, errs := concurrently(128, calls, func(int) (bool, error) {
		started.Add(1)
		out := make([]algorithms.Outcome, 1)
		return b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{key}, limits, now, out)
	})
	if err := <-flushed; err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	if loads := commandStats(t, admin)["script|load"] - before; loads == 0 {
		t.Fatal("no SCRIPT LOAD after the flush: the test never hit NOSCRIPT")
	}
	_, out := evalOne(t, b, algorithms.FixedWindow, []string{key}, limits, now)
	if want := int64(limit - calls - 1); out[0].Remaining != want {
		t.Fatalf("remaining %d after %d calls, want %d (a script ran twice or not at all)", out[0].Remaining, calls, want)
	}
}

// A paused Redis: every call, queued or in flight, ends within its own
// budget (connect + command timeout) with ErrUnavailable, and the breaker
// counts each call once and opens.
func TestRedisPipelinePausedServerTimesOutPerCall(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	const connect, command = 100 * time.Millisecond, 100 * time.Millisecond
	b := newRedisBackend(t, srv.URL(), redis.Options{ConnectTimeout: connect, CommandTimeout: command,
		BreakerFailures: 50, BreakerCooldown: time.Hour})
	evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, oneLimit, 0) // connect first
	if err := admin.ClientPause(context.Background(), 3*time.Second).Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	const width = 200
	var late, unavailable, open atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < width; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]algorithms.Outcome, 1)
			start := time.Now()
			_, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{uniquePrefix(t)}, oneLimit, 0, out)
			if time.Since(start) > connect+command+300*time.Millisecond { // scheduling slack on a loaded machine
				late.Add(1)
			}
			switch {
			case errors.Is(err, redis.ErrBreakerOpen):
				open.Add(1)
			case errors.Is(err, redis.ErrUnavailable):
				unavailable.Add(1)
			default:
				t.Errorf("call during pause: %v, want ErrUnavailable", err)
			}
		}()
	}
	wg.Wait()
	if late.Load() > 0 {
		t.Fatalf("%d of %d calls outlived their budget of %v", late.Load(), width, connect+command)
	}
	if unavailable.Load()+open.Load() != width {
		t.Fatalf("unavailable %d + breaker open %d != %d calls", unavailable.Load(), open.Load(), width)
	}
	// Every call started before the breaker opened, so each reported a
	// failure; with 50 needed, it must be open now.
	out := make([]algorithms.Outcome, 1)
	if _, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{uniquePrefix(t)}, oneLimit, 0,
		out); !errors.Is(err, redis.ErrBreakerOpen) {
		t.Fatalf("after %d timeouts: %v, want ErrBreakerOpen", width, err)
	}
}

// Callers canceled while their calls wait behind stuck pipelines return at
// once with context.Canceled, their commands are never sent, and the breaker
// does not count them.
func TestRedisPipelineCancelWhileQueued(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{ConnectTimeout: time.Second, CommandTimeout: time.Second,
		BreakerFailures: 1, BreakerCooldown: time.Hour})
	fw := b.of(algorithms.FixedWindow)
	evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, oneLimit, 0)
	if err := admin.ClientPause(context.Background(), 500*time.Millisecond).Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	// Fill every flight with a call that waits for the pause to end.
	var stuck sync.WaitGroup
	for g := 0; g < 16; g++ {
		stuck.Add(1)
		go func() {
			defer stuck.Done()
			out := make([]algorithms.Outcome, 1)
			if _, err := fw.Evaluate(context.Background(), []string{uniquePrefix(t)}, oneLimit, 0, out); err != nil {
				t.Errorf("call held by the pause: %v", err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	canceledKey := uniquePrefix(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 8)
	for g := 0; g < cap(done); g++ {
		go func() {
			out := make([]algorithms.Outcome, 1)
			_, err := fw.Evaluate(ctx, []string{canceledKey}, oneLimit, 0, out)
			done <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	for g := 0; g < cap(done); g++ {
		err := <-done
		if !errors.Is(err, context.Canceled) || !errors.Is(err, redis.ErrUnavailable) {
			t.Fatalf("canceled call: %v, want context.Canceled wrapped as ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("canceled calls took %v to return; the pause held them", d)
	}
	stuck.Wait()
	if n, err := admin.Exists(context.Background(), canceledKey).Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS canceled key: %d, %v; want 0: a canceled queued call was sent", n, err)
	}
	// BreakerFailures 1: one counted failure would have opened it.
	if admitted, _ := evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, oneLimit, 0); !admitted {
		t.Fatal("request after the cancellations blocked")
	}
}

// Concurrent calls really share round trips: Redis reads many commands per
// read (INFO stats total_reads_processed), where one command per call would
// cost at least one read each.
func TestRedisPipelineBatchesConcurrentCalls(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	key := uniquePrefix(t)
	limits := []algorithms.Limit{{Limit: 1_000_000, WindowUS: 3600 * secondUS}}
	now := testEpochUS()
	evalOne(t, b, algorithms.FixedWindow, []string{key}, limits, now) // script loaded, connection made
	const calls = 5000
	before := statsField(t, admin, "total_reads_processed")
	_, errs := concurrently(256, calls, func(int) (bool, error) {
		out := make([]algorithms.Outcome, 1)
		return b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{key}, limits, now, out)
	})
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	reads := statsField(t, admin, "total_reads_processed") - before
	if reads > calls/2 {
		t.Fatalf("Redis needed %d reads for %d concurrent calls: not pipelined", reads, calls)
	}
	t.Logf("%d calls in %d reads", calls, reads)
}

// statsField returns one integer field of INFO stats.
func statsField(t testing.TB, c *goredis.Client, name string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatalf("INFO stats: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO stats %s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("INFO stats has no %s", name)
	return 0
}
