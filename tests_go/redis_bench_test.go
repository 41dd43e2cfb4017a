package tests_go

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

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

// BenchmarkRedisCallBreakdown splits one sequential Evaluate (fixed window,
// one key, Redis TIME) into its parts, on one server: a bare go-redis EVALSHA
// of "return 1" (the floor), the same with the backend's client settings and
// per-call deadline, the fixed-window script through bare go-redis, and
// Backend.Evaluate itself. Script minus noop is the script's cost in Redis;
// Evaluate minus script is the backend's own work.
//
//	go test -run '^$' -bench RedisCallBreakdown ./tests_go/
func BenchmarkRedisCallBreakdown(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	src, err := os.ReadFile(filepath.Join("..", "backends", "redis", "lua", "fixed_window.lua"))
	if err != nil {
		b.Fatal(err)
	}
	plain := srv.Client(b)
	ours := goredis.NewClient(&goredis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
		WriteTimeout: time.Second, ContextTimeoutEnabled: true, MaxRetries: -1, DisableIdentity: true,
		PipelinePoolSize: -1})
	b.Cleanup(func() { _ = ours.Close() })
	noop, err := plain.ScriptLoad(ctx, "return 1").Result()
	if err != nil {
		b.Fatal(err)
	}
	fw, err := plain.ScriptLoad(ctx, string(src)).Result()
	if err != nil {
		b.Fatal(err)
	}
	key := uniquePrefix(b)
	for _, tc := range []struct {
		name     string
		c        *goredis.Client
		deadline bool
		sha      string
		keys     []string
		args     []interface{}
	}{
		{"noop/plain", plain, false, noop, nil, nil},
		{"noop/backend-settings+deadline", ours, true, noop, nil, nil},
		{"fixed_window/plain", plain, false, fw, []string{key}, []interface{}{"", redis.MaxLimit, secondUS}},
		{"fixed_window/backend-settings+deadline", ours, true, fw, []string{key}, []interface{}{"", redis.MaxLimit, secondUS}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				cctx, cancel := ctx, context.CancelFunc(func() {})
				if tc.deadline {
					cctx, cancel = context.WithTimeout(ctx, 2*time.Second)
				}
				err := tc.c.EvalSha(cctx, tc.sha, tc.keys, tc.args...).Err()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	be := newRedisBackend(b, srv.URL(), redis.Options{})
	out := make([]algorithms.Outcome, 1)
	limits := []algorithms.Limit{{Limit: redis.MaxLimit, WindowUS: secondUS}}
	b.Run("fixed_window/Backend.Evaluate", func(b *testing.B) {
		for b.Loop() {
			if _, err := be.of(algorithms.FixedWindow).Evaluate(ctx, []string{key + ":be"}, limits, 0, out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
