package tests_go

import (
	"context"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/memory"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/core"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// exampleRow is one row of a worked example: a request at atUS after the
// epoch and the outcome the single dimension must report.
type exampleRow struct {
	atUS          int64
	admitted      bool
	remaining     int64
	resetAtUS     int64 // after the epoch
	retryAfterUS  int64
	retryAfterHdr int64 // Retry-After header of §7, whole seconds (blocked rows only)
}

// The worked examples of docs/semantics.md §3, against a real redis-server
// with an explicit now (ARGV[1]).
func TestRedisWorkedExamples(t *testing.T) {
	tests := []struct {
		name  string
		kind  algorithms.Kind
		limit algorithms.Limit
		rows  []exampleRow
		// dropAtUS is when §3 says the state may be dropped after the last
		// admitted row (after the epoch); 0 for the sliding window, whose
		// expiry is relative (PEXPIRE).
		dropAtUS int64
	}{
		{
			name: "§3.1 fixed window 3 per s", kind: algorithms.FixedWindow,
			limit: algorithms.Limit{Limit: 3, WindowUS: secondUS},
			rows: []exampleRow{
				{atUS: 10_000_000, admitted: true, remaining: 2, resetAtUS: 11_000_000},
				{atUS: 10_200_000, admitted: true, remaining: 1, resetAtUS: 11_000_000},
				{atUS: 10_400_000, admitted: true, remaining: 0, resetAtUS: 11_000_000},
				{atUS: 10_600_000, admitted: false, remaining: 0, resetAtUS: 11_000_000, retryAfterUS: 400_000,
					retryAfterHdr: 1},
				{atUS: 11_000_000, admitted: true, remaining: 2, resetAtUS: 12_000_000},
			},
			dropAtUS: 12_000_000, // window_end
		},
		{
			name: "§3.2 sliding window 2 per s", kind: algorithms.SlidingWindow,
			limit: algorithms.Limit{Limit: 2, WindowUS: secondUS},
			rows: []exampleRow{
				{atUS: 0, admitted: true, remaining: 1, resetAtUS: 1_000_000},
				{atUS: 500_000, admitted: true, remaining: 0, resetAtUS: 1_000_000},
				{atUS: 700_000, admitted: false, remaining: 0, resetAtUS: 1_000_000, retryAfterUS: 300_000,
					retryAfterHdr: 1},
				{atUS: 1_000_000, admitted: true, remaining: 0, resetAtUS: 1_500_000},
				{atUS: 1_200_000, admitted: false, remaining: 0, resetAtUS: 1_500_000, retryAfterUS: 300_000,
					retryAfterHdr: 1},
			},
		},
		{
			name: "§3.3 token bucket 2 per s", kind: algorithms.TokenBucket,
			limit: algorithms.Limit{Limit: 2, WindowUS: secondUS},
			rows: []exampleRow{
				{atUS: 0, admitted: true, remaining: 1, resetAtUS: 500_000},
				{atUS: 0, admitted: true, remaining: 0, resetAtUS: 1_000_000},
				{atUS: 0, admitted: false, remaining: 0, resetAtUS: 1_000_000, retryAfterUS: 500_000,
					retryAfterHdr: 1},
				{atUS: 250_000, admitted: false, remaining: 0, resetAtUS: 1_000_000, retryAfterUS: 250_000,
					retryAfterHdr: 1},
				{atUS: 500_000, admitted: true, remaining: 0, resetAtUS: 1_500_000},
			},
			dropAtUS: 1_500_000, // reset_at_us: a full bucket equals missing state
		},
	}
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	inspect := srv.Client(t)
	epoch := testEpochUS()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := uniquePrefix(t) + ":" + tt.kind.String() + ":user:x"
			for i, r := range tt.rows {
				now := epoch + r.atUS
				admitted, out := evalOne(t, b, tt.kind, []string{key}, []algorithms.Limit{tt.limit}, now)
				want := algorithms.Outcome{OK: r.admitted, Remaining: r.remaining, ResetAtUS: epoch + r.resetAtUS,
					RetryAfterUS: r.retryAfterUS}
				if admitted != r.admitted || out[0] != want {
					t.Fatalf("row %d (t=+%dµs): admitted=%v %+v, want admitted=%v %+v", i, r.atUS, admitted, out[0],
						r.admitted, want)
				}
				if !admitted {
					// §7: Retry-After = max(1, ceil(retry_after_us / 1e6)).
					hdr := max(1, algorithms.CeilDiv(out[0].RetryAfterUS, secondUS))
					if hdr != r.retryAfterHdr {
						t.Errorf("row %d: Retry-After %d, want %d", i, hdr, r.retryAfterHdr)
					}
				}
			}
			if tt.dropAtUS != 0 {
				exp, err := inspect.PExpireTime(context.Background(), key).Result()
				if err != nil {
					t.Fatal(err)
				}
				if want := algorithms.CeilDiv(epoch+tt.dropAtUS, 1000); exp.Milliseconds() != want {
					t.Errorf("key expires at %d ms, want %d ms", exp.Milliseconds(), want)
				}
			}
		})
	}
}

// §4: a request refused by one dimension consumes nothing in the others, for
// every algorithm, with three and four keys (user, user_per_server, tenant,
// tool) in one script call, on Redis and on the memory backend.
func TestAllOrNothingAcrossKeys(t *testing.T) {
	srv := redistest.Start(t)
	redisB := newRedisBackend(t, srv.URL(), redis.Options{})
	var stores [3]*memory.Store
	for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		s, err := memory.New(kind, 1000)
		if err != nil {
			t.Fatal(err)
		}
		stores[kind] = s
	}
	backends := []struct {
		name string
		of   func(algorithms.Kind) core.Backend
	}{
		{"redis", func(k algorithms.Kind) core.Backend { return redisB.of(k) }},
		{"memory", func(k algorithms.Kind) core.Backend { return stores[k] }},
	}
	now := testEpochUS() + 123_456
	minute := int64(60 * secondUS)
	tests := []struct {
		name  string
		dims  []string
		limit []int64 // per key; the one with limit 2 runs out first
	}{
		{"three keys, tenant tight", []string{"user", "tenant", "tool"}, []int64{5, 2, 10}},
		{"four keys, user_per_server tight", []string{"user", "user_per_server", "tenant", "tool"}, []int64{5, 2, 6, 10}},
		{"four keys, tool tight", []string{"user", "user_per_server", "tenant", "tool"}, []int64{5, 4, 6, 2}},
	}
	for _, be := range backends {
		for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
			for _, tt := range tests {
				t.Run(be.name+"/"+kind.String()+"/"+tt.name, func(t *testing.T) {
					p := uniquePrefix(t) + ":" + kind.String()
					keys := make([]string, len(tt.dims))
					limits := make([]algorithms.Limit, len(tt.dims))
					tight := -1
					for i, d := range tt.dims {
						keys[i] = p + ":" + d + ":x"
						limits[i] = algorithms.Limit{Limit: tt.limit[i], WindowUS: minute}
						if tt.limit[i] == 2 {
							tight = i
						}
					}
					eval := func(keys []string, limits []algorithms.Limit) (bool, []algorithms.Outcome) {
						out := make([]algorithms.Outcome, len(keys))
						admitted, err := be.of(kind).Evaluate(context.Background(), keys, limits, now, out)
						if err != nil {
							t.Fatalf("Evaluate: %v", err)
						}
						return admitted, out
					}
					for i := 0; i < 2; i++ {
						if admitted, out := eval(keys, limits); !admitted {
							t.Fatalf("request %d blocked: %+v", i, out)
						}
					}
					for r := 0; r < 3; r++ {
						admitted, out := eval(keys, limits)
						if admitted {
							t.Fatalf("request %d admitted past the %s limit", r+2, tt.dims[tight])
						}
						for i, o := range out {
							if o.OK != (i != tight) || (o.RetryAfterUS > 0) != (i == tight) {
								t.Fatalf("key %s: ok %v retry %d; want only %s refusing", tt.dims[i], o.OK,
									o.RetryAfterUS, tt.dims[tight])
							}
							if i != tight && o.Remaining != tt.limit[i]-2 {
								t.Fatalf("blocked request %d changed %s: remaining %d, want %d", r, tt.dims[i],
									o.Remaining, tt.limit[i]-2)
							}
						}
					}
					// Each other key alone still has exactly limit-2 left: the
					// blocked requests spent nothing.
					for i := range keys {
						if i == tight {
							continue
						}
						admitted, out := eval(keys[i:i+1], limits[i:i+1])
						if !admitted || out[0].Remaining != tt.limit[i]-3 {
							t.Fatalf("%s alone: admitted=%v remaining=%d, want admitted with %d left", tt.dims[i],
								admitted, out[0].Remaining, tt.limit[i]-3)
						}
					}
				})
			}
		}
	}
}

// §2: with nowUS 0 the script reads Redis TIME; state expiry follows §3.
func TestRedisServerClockAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBackend(t, srv.URL(), redis.Options{})
	inspect := srv.Client(t)
	ctx := context.Background()
	p := uniquePrefix(t)
	for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		t.Run(kind.String(), func(t *testing.T) {
			key := p + ":" + kind.String() + ":user:clock"
			limit := algorithms.Limit{Limit: 2, WindowUS: 60 * secondUS}
			before := time.Now().UnixMicro()
			admitted, out := evalOne(t, b, kind, []string{key}, []algorithms.Limit{limit}, 0)
			after := time.Now().UnixMicro()
			if !admitted || out[0].Remaining != 1 {
				t.Fatalf("first request: admitted=%v %+v", admitted, out[0])
			}
			// Redis runs on this machine, so its TIME is our clock.
			if out[0].ResetAtUS <= before || out[0].ResetAtUS > after+limit.WindowUS {
				t.Errorf("reset_at_us %d not within (now, now+window]: now in [%d, %d]", out[0].ResetAtUS, before, after)
			}
			ttl, err := inspect.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl <= 0 || ttl > 60*time.Second {
				t.Errorf("key TTL %v, want a positive expiry of at most the window", ttl)
			}
		})
	}
}
