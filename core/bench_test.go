package core_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/backends/memory"
	"github.com/rate-limiter-go/rate_limiter_go/core"
)

// Benchmarks of one request through the engine and the memory backend: key
// building, locking, the algorithm and the reported-dimension choice. Times
// are per request. The time advances 1 µs per request so that the state
// changes as in production.

const benchStart = 1_800_000_000 * sec

func benchLimiter(b *testing.B, algo, dims string) *core.Limiter {
	b.Helper()
	var cfg string
	switch dims {
	case "1dim":
		cfg = fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1000000,"window_s":1}}`, algo)
	case "3dim":
		cfg = fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1000000,"window_s":1},`+
			`"by_tenant":{"limit":1000000,"window_s":1},"by_tool":{"search":{"limit":1000000,"window_s":1}}}`, algo)
	case "4dim":
		cfg = fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1000000,"window_s":1},`+
			`"by_user_per_server":{"limit":1000000,"window_s":1},"by_tenant":{"limit":1000000,"window_s":1},`+
			`"by_tool":{"search":{"limit":1000000,"window_s":1}}}`, algo)
	case "blocked":
		cfg = fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":1,"window_s":3600}}`, algo)
	}
	parsed, err := core.ParseConfig([]byte(cfg))
	if err != nil {
		b.Fatal(err)
	}
	store, err := memory.New(parsed.Algorithm, 200_000)
	if err != nil {
		b.Fatal(err)
	}
	l, err := core.NewLimiter(parsed, store)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

var algos = []string{"fixed_window", "sliding_window", "token_bucket"}

// BenchmarkHotKey: one user, admitted on every request; 1, 3 and 4
// dimensions (4: with a virtual server, so user_per_server applies).
func BenchmarkHotKey(b *testing.B) {
	for _, algo := range algos {
		for _, dims := range []string{"1dim", "3dim", "4dim"} {
			b.Run(algo+"/"+dims, func(b *testing.B) {
				l := benchLimiter(b, algo, dims)
				ctx := context.Background()
				r := core.Request{User: "alice@example.com", Server: "srv-1", Tenant: "team-a", Tool: "search",
					NowUS: benchStart}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					r.NowUS++
					if _, err := l.Evaluate(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkBlocked: one user over its limit: every request is refused.
func BenchmarkBlocked(b *testing.B) {
	for _, algo := range algos {
		b.Run(algo, func(b *testing.B) {
			l := benchLimiter(b, algo, "blocked")
			ctx, now := context.Background(), benchStart
			l.Evaluate(ctx, core.Request{User: "alice@example.com", NowUS: now})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now++
				d, err := l.Evaluate(ctx, core.Request{User: "alice@example.com", NowUS: now})
				if err != nil || d.Admitted {
					b.Fatal("want blocked", d, err)
				}
			}
		})
	}
}

// BenchmarkManyKeys: requests spread over 100,000 users (all present in the
// store after warm-up), so lookups miss the CPU caches as in a big deployment.
func BenchmarkManyKeys(b *testing.B) {
	const users = 100_000
	ids := make([]string, users)
	for i := range ids {
		ids[i] = "user" + strconv.Itoa(i) + "@example.com"
	}
	for _, algo := range algos {
		b.Run(algo, func(b *testing.B) {
			l := benchLimiter(b, algo, "1dim")
			ctx, now := context.Background(), benchStart
			for _, id := range ids {
				now++
				l.Evaluate(ctx, core.Request{User: id, NowUS: now})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now++
				if _, err := l.Evaluate(ctx, core.Request{User: ids[(i*7919)%users], NowUS: now}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParallel: GOMAXPROCS goroutines, all on one user ("shared") or
// each on its own users ("distinct").
func BenchmarkParallel(b *testing.B) {
	for _, algo := range algos {
		for _, mode := range []string{"shared", "distinct"} {
			b.Run(algo+"/"+mode, func(b *testing.B) {
				l := benchLimiter(b, algo, "1dim")
				var clock atomic.Int64
				clock.Store(benchStart)
				var worker atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					id := "shared@example.com"
					if mode == "distinct" {
						id = "worker" + strconv.FormatInt(worker.Add(1), 10) + "@example.com"
					}
					for pb.Next() {
						if _, err := l.Evaluate(ctx, core.Request{User: id, NowUS: clock.Add(1)}); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkEntryBytes reports the heap per memory-store key (entry, key
// string, map and slot overhead) after 100,000 distinct users.
func BenchmarkEntryBytes(b *testing.B) {
	const users = 100_000
	ids := make([]string, users)
	for i := range ids {
		ids[i] = "user" + strconv.Itoa(i) + "@example.com"
	}
	for _, algo := range algos {
		b.Run(algo, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				l := benchLimiter(b, algo, "blocked") // 1 per hour: every key stays live
				ctx, now := context.Background(), benchStart
				for _, id := range ids {
					now++
					l.Evaluate(ctx, core.Request{User: id, NowUS: now})
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/users, "B/entry")
				runtime.KeepAlive(l)
			}
		})
	}
}
