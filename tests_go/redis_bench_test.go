package tests_go

import (
	"context"
	"strconv"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// BenchmarkRedisEvaluate measures one Evaluate (one EVALSHA round trip to a
// local redis-server over loopback TCP, Redis TIME as the clock) with 1 and 3
// dimensions, sequentially and from parallel goroutines. The limit is high
// enough that every request is admitted, the more expensive path.
//
//	go test -run '^$' -bench RedisEvaluate -benchmem ./tests_go/
func BenchmarkRedisEvaluate(b *testing.B) {
	srv := redistest.Start(b)
	be := newRedisBackend(b, srv.URL(), redis.Options{})
	p := uniquePrefix(b)
	for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		for _, n := range []int{1, 3} {
			tag := p + ":" + kind.String() + ":" + strconv.Itoa(n)
			keys := []string{tag + ":user:bench", tag + ":tenant:bench", tag + ":tool:bench"}[:n]
			limits := make([]algorithms.Limit, n)
			for i := range limits {
				// Sliding-window logs grow with every admitted request; a
				// one-second window keeps them short.
				limits[i] = algorithms.Limit{Limit: redis.MaxLimit, WindowUS: secondUS}
			}
			name := kind.String() + "/keys=" + strconv.Itoa(n)
			b.Run(name, func(b *testing.B) {
				out := make([]algorithms.Outcome, n)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := be.of(kind).Evaluate(ctx, keys, limits, 0, out); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					out := make([]algorithms.Outcome, n)
					for pb.Next() {
						if _, err := be.of(kind).Evaluate(ctx, keys, limits, 0, out); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
