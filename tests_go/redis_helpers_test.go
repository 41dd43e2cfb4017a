package tests_go

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/core"
)

const secondUS = 1_000_000

// testEpochUS is an explicit "now" for the worked examples: a whole hour one
// day ahead of the wall clock, so every PEXPIREAT the scripts set lands in
// the future and the keys stay readable during the test.
func testEpochUS() int64 {
	hours := time.Now().Unix()/3600 + 24
	return hours * 3600 * secondUS
}

// uniquePrefix returns a key prefix no other test uses, so tests can share a
// server without seeing each other's state.
func uniquePrefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// testOptions returns opts for url with test-friendly timeouts and the
// default breaker (core.DefaultConfig) where opts leaves them zero.
func testOptions(url string, opts redis.Options) redis.Options {
	opts.URL = url
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 500 * time.Millisecond
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 500 * time.Millisecond
	}
	if opts.BreakerFailures == 0 {
		opts.BreakerFailures = core.DefaultConfig().BreakerFailures
	}
	if opts.BreakerCooldown == 0 {
		opts.BreakerCooldown = core.DefaultConfig().BreakerCooldown
	}
	return opts
}

// redisBackends is one Backend per algorithm (a Backend runs the script of
// one algorithm) over the same server and options, indexed by Kind.
type redisBackends [3]*redis.Backend

// of returns the backend of algorithm kind.
func (r redisBackends) of(kind algorithms.Kind) *redis.Backend { return r[kind] }

// newRedisBackend builds the backends of every algorithm for
// testOptions(url, opts), closed at the end of the test. Connections are
// made on first use, so an algorithm a test does not use costs nothing.
func newRedisBackend(t testing.TB, url string, opts redis.Options) redisBackends {
	t.Helper()
	var r redisBackends
	for _, kind := range []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket} {
		opts.Algorithm = kind
		b, err := redis.New(testOptions(url, opts))
		if err != nil {
			t.Fatalf("redis.New: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		r[kind] = b
	}
	return r
}

// evalOne evaluates one request with algorithm kind and fails the test on an error.
func evalOne(t testing.TB, b redisBackends, kind algorithms.Kind, keys []string, limits []algorithms.Limit,
	nowUS int64) (bool, []algorithms.Outcome) {
	t.Helper()
	out := make([]algorithms.Outcome, len(keys))
	admitted, err := b.of(kind).Evaluate(context.Background(), keys, limits, nowUS, out)
	if err != nil {
		t.Fatalf("Evaluate at %d: %v", nowUS, err)
	}
	return admitted, out
}

// commandStats returns INFO commandstats as name -> calls (names as Redis
// prints them, e.g. "evalsha", "script|load").
func commandStats(t testing.TB, c *goredis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	stats := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("INFO commandstats line %q: %v", line, err)
				}
				stats[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return stats
}

// untilStopped runs call(g) over and over in n goroutines (g = 0..n-1) until
// stop is closed; wait on the returned group for them to end.
func untilStopped(n int, stop <-chan struct{}, call func(g int)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				call(g)
			}
		}()
	}
	return &wg
}
