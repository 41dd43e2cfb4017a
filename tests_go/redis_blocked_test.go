package tests_go

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// totalCommands sums the calls of every command in INFO commandstats (the
// INFO itself included).
func totalCommands(stats map[string]int64) int64 {
	var n int64
	for _, calls := range stats {
		n += calls
	}
	return n
}

// userOnlyConfig is a canonical JSON limiting by_user to limit per windowS
// seconds on the Redis at url, with extra fields appended.
func userOnlyConfig(algorithm, url, prefix string, limit, windowS int, extra string) string {
	return fmt.Sprintf(`{"algorithm":%q,"backend":"redis","redis_url":%q,"redis_key_prefix":%q,`+
		`"by_user":{"limit":%d,"window_s":%d},"redis_timeout_ms":2000,"redis_connect_timeout_ms":2000%s}`,
		algorithm, url, prefix, limit, windowS, extra)
}

// A request refused from a remembered refusal (docs/semantics.md §12) is one
// Redis would refuse too: the same requests at the same explicit times, with
// local refusals on and off, get the same verdicts. A local refusal reports
// only remembered keys, so its Retry-After is never longer than Redis's, and
// where it reports the same dimension every header agrees. With one
// dimension the answers are identical.
func TestLocalRefusalsAreRedisRefusals(t *testing.T) {
	one := redistest.Start(t)
	for _, algorithm := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		for _, shape := range []string{"three dimensions", "one dimension"} {
			t.Run(algorithm+"/"+shape, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(7, uint64(len(algorithm))))
				users, tenants, tools := []string{"alice", "bob"}, []string{"", "t1"}, []string{"", "search", "fetch"}
				if shape == "one dimension" {
					tenants, tools = []string{""}, []string{""}
				}
				now := time.Now().UnixMicro() + 300_000_000 // ahead of the clock: PEXPIREAT keeps the state alive
				var reqs []limiter.Request
				for i := 0; i < 300; i++ {
					now += rng.Int64N(30_000)
					reqs = append(reqs, limiter.Request{User: users[rng.IntN(len(users))],
						Tenant: tenants[rng.IntN(len(tenants))], Tool: tools[rng.IntN(len(tools))], NowUS: now})
				}
				cached := openLimiter(t, deployConfig(algorithm, one.URL(), uniquePrefix(t), ""))
				got := decideAll(t, cached, reqs)
				want := decideAll(t, openLimiter(t, deployConfig(algorithm, one.URL(), uniquePrefix(t), `,"redis_blocked_max_keys":0`)), reqs)
				blocked := 0
				for i := range want {
					g, w := got[i], want[i]
					switch {
					case g.Admitted != w.Admitted:
						t.Fatalf("request %d %+v: local refusals on %+v, off %+v", i, reqs[i], g, w)
					case shape == "one dimension" && g != w:
						t.Fatalf("request %d %+v: one dimension, local refusals on %+v, off %+v", i, reqs[i], g, w)
					case !g.Admitted && g.RetryAfterS > w.RetryAfterS:
						t.Fatalf("request %d: local Retry-After %d s beyond Redis's %d s", i, g.RetryAfterS, w.RetryAfterS)
					case g.Dimension == w.Dimension && g != w:
						t.Fatalf("request %d %+v: same dimension, different headers: on %+v, off %+v", i, reqs[i], g, w)
					}
					if !w.Admitted {
						blocked++
					}
				}
				if local := cached.LocalRefusals(); local == 0 || blocked < 20 {
					t.Fatalf("%d blocked, %d of them answered locally: the sequence tests nothing", blocked, local)
				}
			})
		}
	}
}

// A client that keeps calling while refused costs Redis (nearly) nothing:
// at most 0.05 commands per refused request (the bound), on the
// production clock, for every algorithm.
func TestLocalRefusalsSaveRedisCommands(t *testing.T) {
	one := redistest.Start(t)
	admin := one.Client(t)
	for _, algorithm := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algorithm, func(t *testing.T) {
			l := openLimiter(t, userOnlyConfig(algorithm, one.URL(), uniquePrefix(t), 3, 3600, ""))
			before := totalCommands(commandStats(t, admin))
			const calls = 2000
			refused := 0
			for i := 0; i < calls; i++ {
				d, err := l.Evaluate(context.Background(), limiter.Request{User: "abuser"})
				if err != nil {
					t.Fatal(err)
				}
				if !d.Admitted {
					refused++
				}
			}
			// Commands beyond the 3 admissions, the INFO of `before`, and the first
			// call's SCRIPT LOAD retry (NOSCRIPT on a fresh server), per refusal.
			spent := totalCommands(commandStats(t, admin)) - before - 3
			perRefusal := float64(spent) / float64(refused)
			t.Logf("%d refused, %d Redis commands beyond the admissions: %.4f per refused request", refused, spent, perRefusal)
			if refused != calls-3 {
				t.Fatalf("refused %d of %d, want all but the limit of 3", refused, calls)
			}
			if perRefusal > 0.05 {
				t.Fatalf("%.4f Redis commands per refused request, want at most 0.05", perRefusal)
			}
		})
	}
}

// A client that waits the announced Retry-After is admitted: a remembered
// refusal never outlives Redis's (§12, "Which clock").
func TestLocalRefusalEndsByItsRetryAfter(t *testing.T) {
	one := redistest.Start(t)
	for _, algorithm := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algorithm, func(t *testing.T) {
			l := openLimiter(t, userOnlyConfig(algorithm, one.URL(), uniquePrefix(t), 1, 1, ""))
			ctx := context.Background()
			req := limiter.Request{User: "u"}
			var d limiter.Decision
			for i := 0; i < 3; i++ { // admitted, refused by Redis, refused locally
				var err error
				if d, err = l.Evaluate(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			if d.Admitted || l.LocalRefusals() != 1 {
				t.Fatalf("third call %+v, %d local refusals; want a local refusal", d, l.LocalRefusals())
			}
			time.Sleep(time.Duration(d.RetryAfterS) * time.Second)
			if d, err := l.Evaluate(ctx, req); err != nil || !d.Admitted {
				t.Fatalf("after waiting Retry-After %d s: %+v, %v; want admitted", d.RetryAfterS, d, err)
			}
		})
	}
}

// On a Cluster, give-backs between slot groups can free a refused key early,
// so a configuration whose requests may span groups remembers nothing; one
// with a single dimension does (§12).
func TestClusterRemembersRefusalsOnlyWithOneDimension(t *testing.T) {
	c := redistest.StartCluster(t)
	for _, tt := range []struct {
		name      string
		config    string
		wantLocal bool
	}{
		{"three dimensions", deployConfig("fixed_window", c.SeedURL(), uniquePrefix(t), `,"redis_mode":"cluster"`), false},
		{"user only", userOnlyConfig("fixed_window", c.SeedURL(), uniquePrefix(t), 1, 60, `,"redis_mode":"cluster"`), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := openLimiter(t, tt.config)
			for i := 0; i < 10; i++ {
				if _, err := l.Evaluate(context.Background(), limiter.Request{User: "alice", Tenant: "t1", Tool: "search"}); err != nil {
					t.Fatal(err)
				}
			}
			if got := l.LocalRefusals() > 0; got != tt.wantLocal {
				t.Fatalf("local refusals %d; want some: %v", l.LocalRefusals(), tt.wantLocal)
			}
		})
	}
}
