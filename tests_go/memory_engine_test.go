package tests_go

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

// memLimiter opens a limiter of (name, cfg) as pyext.NewLimiter does: limiters
// of one name and configuration share one memory store.
func memLimiter(t *testing.T, name, cfg string) *limiter.Limiter {
	t.Helper()
	l, err := limiter.Open(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// TestMemoryEngineConcurrentDimensions: many goroutines, two limiters sharing
// one store (§10), three dimensions per request (§4). Every tool request is
// admitted or refused as a whole, so the totals are exact: the tool admits
// exactly its limit, and the refused requests spent nothing in the user and
// tenant dimensions, which a final probe reads back.
func TestMemoryEngineConcurrentDimensions(t *testing.T) {
	t.Cleanup(limiter.ResetMemoryStores)
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1000,"window_s":3600},`+
				`"by_tenant":{"limit":1000,"window_s":3600},"by_tool":{"search":{"limit":150,"window_s":3600}}}`, algo)
			a, b := memLimiter(t, t.Name(), cfg), memLimiter(t, t.Name(), cfg)
			ctx := context.Background()
			const workers, each = 8, 50
			now := int64(1_800_000_000) * secondUS
			var admitted atomic.Int64
			perUser := make([]atomic.Int64, workers)
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					l := a
					if w%2 == 1 {
						l = b
					}
					user := fmt.Sprintf("user%d@example.com", w)
					for i := 0; i < each; i++ {
						d, err := l.Evaluate(ctx, limiter.Request{User: user, Tenant: "team:1", Tool: "search", NowUS: now})
						if err != nil {
							t.Error(err)
							return
						}
						if d.Admitted {
							admitted.Add(1)
							perUser[w].Add(1)
						} else if d.Dimension != limiter.DimTool || d.RetryAfterS < 1 {
							t.Errorf("refused by %v with Retry-After %d, want the tool", d.Dimension, d.RetryAfterS)
						}
					}
				}(w)
			}
			wg.Wait()
			if admitted.Load() != 150 {
				t.Fatalf("admitted %d of %d, want the tool limit 150", admitted.Load(), workers*each)
			}
			// Probe without the tool: remaining counts show exactly the admitted requests.
			d, err := b.Evaluate(ctx, limiter.Request{User: "user0@example.com", Tenant: "team:1", NowUS: now})
			if err != nil {
				t.Fatal(err)
			}
			wantUser := 1000 - perUser[0].Load() - 1
			wantTenant := 1000 - admitted.Load() - 1
			if d.Dimension != limiter.DimUser && d.Dimension != limiter.DimTenant {
				t.Fatalf("probe reported %v", d.Dimension)
			}
			if want := min(wantUser, wantTenant); d.Remaining != want {
				t.Fatalf("probe remaining %d, want %d (user %d, tenant %d)", d.Remaining, want, wantUser, wantTenant)
			}
		})
	}
}

// TestMemoryEngineBoundUnderLoad: many distinct users from many goroutines
// never grow the store beyond memory_max_keys plus the keys in flight.
func TestMemoryEngineBoundUnderLoad(t *testing.T) {
	t.Cleanup(limiter.ResetMemoryStores)
	cfg := `{"algorithm":"sliding_window","by_user":{"limit":5,"window_s":60},"memory_max_keys":500}`
	l := memLimiter(t, t.Name(), cfg)
	ctx := context.Background()
	const workers = 4
	var wg sync.WaitGroup
	var maxSeen atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				now := int64(1_800_000_000)*secondUS + int64(i)
				if _, err := l.Evaluate(ctx, limiter.Request{User: fmt.Sprintf("w%d-u%d", w, i), NowUS: now}); err != nil {
					t.Error(err)
					return
				}
				for n, m := int64(l.MemoryKeys()), maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
				}
			}
		}(w)
	}
	wg.Wait()
	if m := maxSeen.Load(); m > 500+workers {
		t.Fatalf("store held %d keys, bound 500 (+%d in flight)", m, workers)
	}
}

// TestMemoryEngineConcurrentFourDimensions: as above with by_user_per_server.
// Each (user, server) pair is shared by two goroutines on two limiters and
// runs out first, so every pair admits exactly its 20, every refusal names
// user_per_server, and the probes show the refusals spent nothing elsewhere
// (four keys locked in key order, §4).
func TestMemoryEngineConcurrentFourDimensions(t *testing.T) {
	t.Cleanup(limiter.ResetMemoryStores)
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1000,"window_s":3600},`+
				`"by_user_per_server":{"limit":20,"window_s":3600},"by_tenant":{"limit":1000,"window_s":3600},`+
				`"by_tool":{"search":{"limit":150,"window_s":3600}}}`, algo)
			a, b := memLimiter(t, t.Name(), cfg), memLimiter(t, t.Name(), cfg)
			ctx := context.Background()
			const workers, each, perPair = 8, 50, 20
			now := int64(1_800_000_000) * secondUS
			var perPairAdmitted [2][2]atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					l := a
					if w >= workers/2 {
						l = b
					}
					u, s := w%2, (w/2)%2
					r := limiter.Request{User: fmt.Sprintf("user%d@example.com", u), Server: fmt.Sprintf("srv:%d", s),
						Tenant: "team:1", Tool: "search", NowUS: now}
					for i := 0; i < each; i++ {
						d, err := l.Evaluate(ctx, r)
						if err != nil {
							t.Error(err)
							return
						}
						if d.Admitted {
							perPairAdmitted[u][s].Add(1)
						} else if d.Dimension != limiter.DimUserPerServer || d.RetryAfterS < 1 {
							t.Errorf("refused by %v with Retry-After %d, want user_per_server", d.Dimension, d.RetryAfterS)
						}
					}
				}(w)
			}
			wg.Wait()
			for u := range perPairAdmitted {
				for s := range perPairAdmitted[u] {
					if n := perPairAdmitted[u][s].Load(); n != perPair {
						t.Fatalf("user%d on srv:%d admitted %d, want %d", u, s, n, perPair)
					}
				}
			}
			probes := []struct {
				r    limiter.Request
				dim  limiter.Dimension
				left int64
			}{
				{limiter.Request{User: "user0@example.com", NowUS: now}, limiter.DimUser, 1000 - 2*perPair - 1},
				{limiter.Request{User: "probe", Tool: "search", NowUS: now}, limiter.DimTool, 150 - 4*perPair - 1},
				{limiter.Request{User: "probe2", Tenant: "team:1", NowUS: now}, limiter.DimTenant, 1000 - 4*perPair - 1},
			}
			for _, p := range probes {
				d, err := b.Evaluate(ctx, p.r)
				if err != nil {
					t.Fatal(err)
				}
				if !d.Admitted || d.Dimension != p.dim || d.Remaining != p.left {
					t.Fatalf("probe %+v: %+v, want %v with %d left", p.r, d, p.dim, p.left)
				}
			}
		})
	}
}
