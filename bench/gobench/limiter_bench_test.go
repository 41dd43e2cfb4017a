package gobench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

// poolSize is the number of distinct users (and, modulo 8, tenants) the
// requests cycle through, as in the Python hook benchmark (bench/rlbench).
const poolSize = 64

// The benchmarks pass an explicit time: baseUS (2027-01-15T08:00:00Z, aligned
// to every window) plus tickUS per operation. Go evaluates more than a million
// requests per second, so with the wall clock the shared tool key would reach
// the admitted path's 1,000,000/s and start refusing; at 20 µs per op the
// simulated rate is 50,000/s, and a 1/h window cannot roll over in a run.
const (
	baseUS = int64(1_800_000_000_000_000)
	tickUS = int64(20)
)

// clock hands out the simulated times, safe for parallel benchmarks.
type clock struct{ ticks atomic.Int64 }

func (c *clock) next() int64 { return baseUS + c.ticks.Add(1)*tickUS }

// scenario is one benchmark cell.
type scenario struct {
	algorithm string // canonical_json spelling
	dims      int    // 1: by_user; 3: by_user, by_tenant, by_tool
	blocked   bool   // every limit 1/h, exhausted before timing
}

func (s scenario) name() string {
	path := "admitted"
	if s.blocked {
		path = "blocked"
	}
	return fmt.Sprintf("%s/dims=%d/%s", s.algorithm, s.dims, path)
}

// config renders the scenario as LimiterConfig.canonical_json() would: the
// admitted path uses 1,000,000 per second (never reached), the blocked path 1
// per hour on every configured dimension.
func (s scenario) config() []byte {
	rate := `{"limit":1000000,"window_s":1}`
	if s.blocked {
		rate = `{"limit":1,"window_s":3600}`
	}
	tenant, tools := "null", "{}"
	if s.dims == 3 {
		tenant, tools = rate, `{"search":`+rate+`}`
	}
	return []byte(fmt.Sprintf(`{"algorithm":%q,"backend":"memory","by_user":%s,"by_tenant":%s,"by_tool":%s,`+
		`"redis_key_prefix":"bench","memory_max_keys":100000}`, s.algorithm, rate, tenant, tools))
}

func scenarios() []scenario {
	var out []scenario
	for _, algorithm := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		for _, dims := range []int{1, 3} {
			for _, blocked := range []bool{false, true} {
				out = append(out, scenario{algorithm, dims, blocked})
			}
		}
	}
	return out
}

// request is one prebuilt (user, tenant, tool) triple as the plugin passes it.
type request struct{ user, tenant, tool string }

func requests(dims int) []request {
	reqs := make([]request, poolSize)
	for i := range reqs {
		reqs[i].user = fmt.Sprintf("user-%03d@example.com", i)
		if dims == 3 {
			reqs[i].tenant = fmt.Sprintf("team-%d", i%8)
			reqs[i].tool = "search"
		}
	}
	return reqs
}

// newLimiter opens a limiter through the composition root, as the binding
// does, on a fresh memory store (a registry of its own) and, for the blocked
// path, spends every key's quota so that timed calls are all refused.
func newLimiter(tb testing.TB, s scenario, clk *clock) (*limiter.Limiter, []request) {
	tb.Helper()
	lim, err := limiter.NewRegistry().Open("gobench", string(s.config()))
	if err != nil {
		tb.Fatalf("limiter of %s: %v", s.name(), err)
	}
	tb.Cleanup(lim.Close)
	reqs := requests(s.dims)
	ctx := context.Background()
	for _, r := range reqs {
		if _, err := lim.Evaluate(ctx, limiter.Request{User: r.user, Tenant: r.tenant, Tool: r.tool, NowUS: clk.next()}); err != nil {
			tb.Fatalf("warm-up of %s: %v", s.name(), err)
		}
	}
	return lim, reqs
}

// BenchmarkLimiterMemory is one Evaluate per op on the memory backend.
//
//	go test -run '^$' -bench LimiterMemory -benchmem ./bench/gobench/
func BenchmarkLimiterMemory(b *testing.B) {
	for _, s := range scenarios() {
		b.Run(s.name(), func(b *testing.B) {
			var clk clock
			lim, reqs := newLimiter(b, s, &clk)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := reqs[i%poolSize]
				i++
				d, err := lim.Evaluate(ctx, limiter.Request{User: r.user, Tenant: r.tenant, Tool: r.tool, NowUS: clk.next()})
				if err != nil {
					b.Fatal(err)
				}
				if d.Admitted == s.blocked {
					b.Fatalf("%s: admitted=%v", s.name(), d.Admitted)
				}
			}
		})
	}
}

// BenchmarkLimiterMemoryParallel is the same from GOMAXPROCS goroutines,
// which contend on the shared keys (the tenant and tool keys with 3 dimensions).
func BenchmarkLimiterMemoryParallel(b *testing.B) {
	for _, s := range scenarios() {
		if s.blocked {
			continue
		}
		b.Run(s.name(), func(b *testing.B) {
			var clk clock
			lim, reqs := newLimiter(b, s, &clk)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r := reqs[i%poolSize]
					i++
					// Goroutines draw times from one counter, so a key may see a
					// time a few ticks older than its newest entry; the limit is
					// far away, so every request is still admitted.
					d, err := lim.Evaluate(ctx, limiter.Request{User: r.user, Tenant: r.tenant, Tool: r.tool, NowUS: clk.next()})
					if err != nil || !d.Admitted {
						b.Errorf("%s: admitted=%v err=%v", s.name(), d.Admitted, err)
						return
					}
				}
			})
		})
	}
}

// TestScenarioPaths checks that every benchmark cell is on the path its name
// says: the admitted path admits and the blocked path refuses, with a
// reported dimension, so a misconfigured cell cannot be timed by mistake.
func TestScenarioPaths(t *testing.T) {
	ctx := context.Background()
	for _, s := range scenarios() {
		t.Run(s.name(), func(t *testing.T) {
			var clk clock
			lim, reqs := newLimiter(t, s, &clk)
			for _, r := range reqs {
				d, err := lim.Evaluate(ctx, limiter.Request{User: r.user, Tenant: r.tenant, Tool: r.tool, NowUS: clk.next()})
				if err != nil {
					t.Fatal(err)
				}
				if d.Admitted == s.blocked {
					t.Fatalf("admitted=%v, want %v", d.Admitted, !s.blocked)
				}
				if d.Dimension == limiter.DimNone {
					t.Fatalf("no reported dimension")
				}
			}
		})
	}
}
