package limiter

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/memory"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/core"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

const now = int64(1_800_000_000_000_000) // Unix µs, aligned to every window

func open(t *testing.T, g *Registry, name, cfg string) *Limiter {
	t.Helper()
	l, err := g.Open(name, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg, err)
	}
	t.Cleanup(l.Close)
	return l
}

func remaining(t *testing.T, l *Limiter, user string) int64 {
	t.Helper()
	d, err := l.Evaluate(context.Background(), Request{User: user, NowUS: now})
	if err != nil {
		t.Fatal(err)
	}
	return d.Remaining
}

// TestMemorySharing: one memory store per (name, configuration) of a
// registry (§10), for every algorithm; another name, configuration or
// registry has its own; ResetMemoryStores starts over.
func TestMemorySharing(t *testing.T) {
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			g := NewRegistry()
			cfg := fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":5,"window_s":60}}`, algo)
			a, b := open(t, g, "p", cfg), open(t, g, "p", cfg)
			if remaining(t, a, "u") != 4 || remaining(t, b, "u") != 3 {
				t.Fatal("two limiters of one name and configuration do not share their counts")
			}
			if a.MemoryKeys() != 1 {
				t.Fatalf("store holds %d keys, want 1", a.MemoryKeys())
			}
			other := fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":5,"window_s":60},"memory_max_keys":7}`, algo)
			for _, l := range []*Limiter{open(t, g, "q", cfg), open(t, g, "p", other), open(t, NewRegistry(), "p", cfg)} {
				if remaining(t, l, "u") != 4 {
					t.Fatal("another name, configuration or registry shares the counts")
				}
			}
			g.ResetMemoryStores()
			if remaining(t, open(t, g, "p", cfg), "u") != 4 {
				t.Fatal("ResetMemoryStores kept the store")
			}
			if remaining(t, a, "u") != 2 {
				t.Fatal("an open limiter lost its store on ResetMemoryStores")
			}
		})
	}
}

// TestOpenRefuses: configuration errors wrap ErrConfig and open nothing.
func TestOpenRefuses(t *testing.T) {
	g := NewRegistry()
	for _, cfg := range []string{`{`, `{"algorithm":"x"}`, `{"backend":"redis"}`, `{"redis_breaker_failures":0}`} {
		if _, err := g.Open("p", cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("Open(%s): error %v, want ErrConfig", cfg, err)
		}
	}
	bad := `{"backend":"redis","redis_url":"rediss://127.0.0.1:1/0","redis_tls_ca_file":"/nonexistent/ca.pem"}`
	if _, err := g.Open("p", bad); err == nil {
		t.Error("Open accepted a missing TLS CA file")
	}
	if len(g.stores) != 0 || len(g.redis) != 0 {
		t.Errorf("refused configurations left %d stores, %d Redis backends", len(g.stores), len(g.redis))
	}
}

// TestRedisSharing: limiters of one name and configuration share one Redis
// backend, closed with the last of them; the configuration's settings reach
// the backend.
func TestRedisSharing(t *testing.T) {
	srv := redistest.Start(t)
	g := NewRegistry()
	cfg := `{"algorithm":"sliding_window","backend":"redis","redis_url":"` + srv.URL() +
		`","redis_key_prefix":"share","by_user":{"limit":5,"window_s":60},"redis_timeout_ms":500}`
	a, err := g.Open("p", cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Open("p", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if remaining(t, a, "u") != 4 || remaining(t, b, "u") != 3 || a.MemoryKeys() != -1 {
		t.Fatal("two limiters of one configuration do not count on one Redis key")
	}
	ref := g.redis[shareKey{"p", cfg}]
	if ref == nil || ref.refs != 2 || ref.b.Algorithm() != algorithms.SlidingWindow {
		t.Fatalf("shared backend %+v: want 2 references to one sliding-window backend", ref)
	}
	a.Close()
	a.Close() // twice: one release
	if ref.refs != 1 || remaining(t, b, "u") != 2 {
		t.Fatalf("after closing one limiter: %d references, or the other stopped working", ref.refs)
	}
	b.Close()
	if len(g.redis) != 0 {
		t.Fatal("the last Close left the backend registered")
	}
	if _, err := b.Evaluate(context.Background(), Request{User: "u", NowUS: now}); !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("after the last Close: %v, want the backend closed", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Class
	}{
		{fmt.Errorf("user: %w", core.ErrBadArgument), BadArgument},
		{fmt.Errorf("%w: %w", core.ErrBackend, memory.ErrBadRequest), BadArgument},
		{fmt.Errorf("%w: %w", core.ErrBackend, redis.ErrInvalidRequest), BadArgument},
		{fmt.Errorf("%w: %w", core.ErrBackend, redis.ErrBreakerOpen), Unavailable},
		{errors.New("something else"), Internal},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestLargestRate: the largest rate the configuration allows (MaxRateLimit
// per the longest window, both generated from config.py) works on every
// backend and algorithm, so a backend's own request bounds never refuse
// what the configuration accepted.
func TestLargestRate(t *testing.T) {
	srv := redistest.Start(t)
	g := NewRegistry()
	for _, backend := range []string{`"memory"`, `"redis","redis_url":"` + srv.URL() + `"`} {
		for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
			cfg := fmt.Sprintf(`{"backend":%s,"algorithm":%q,"redis_key_prefix":"largest","by_user":{"limit":%d,"window_s":%d}}`,
				backend, algo, core.MaxRateLimit, core.MaxRateWindowS)
			l := open(t, g, "largest", cfg)
			if got := remaining(t, l, "u"); got != core.MaxRateLimit-1 {
				t.Errorf("%s: remaining %d after one request, want %d", cfg, got, core.MaxRateLimit-1)
			}
		}
	}
}
