package core_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/core"
)

// vouchChecker is a TrustingBackend that fails the test when the engine
// gives its trusted entry arguments outside the entry's rules, and counts
// the calls that reach it.
type vouchChecker struct {
	t      *testing.T
	kind   algorithms.Kind
	spaces map[string]uint32
	calls  int
}

func (v *vouchChecker) Algorithm() algorithms.Kind { return v.kind }
func (v *vouchChecker) Close() error               { return nil }

func (v *vouchChecker) KeySpace(prefix string) uint32 {
	if id, ok := v.spaces[prefix]; ok {
		return id
	}
	v.spaces[prefix] = uint32(len(v.spaces) + 1)
	return v.spaces[prefix]
}

func (v *vouchChecker) Evaluate(context.Context, []string, []algorithms.Limit, int64, []algorithms.Outcome) (bool, error) {
	v.t.Error("Evaluate called: the engine should use the trusted entry")
	return false, nil
}

func (v *vouchChecker) EvaluateSegments(context.Context, []uint32, []string, []algorithms.Limit, int64, []algorithms.Outcome) (bool, error) {
	v.t.Error("EvaluateSegments called: the engine should use the trusted entry")
	return false, nil
}

func (v *vouchChecker) EvaluateSegmentsTrusted(spaces []uint32, segs []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool {
	v.calls++
	n := len(segs)
	if n < 1 || n > core.MaxDimensions || len(spaces) != n || len(limits) != n || len(out) < n {
		v.t.Fatalf("shape: %d segments, %d prefix ids, %d limits, %d outcomes", n, len(spaces), len(limits), len(out))
	}
	if nowUS < 0 || nowUS > core.MaxNowUS {
		v.t.Fatalf("nowUS %d", nowUS)
	}
	for i := range limits {
		if limits[i].Limit < 1 || limits[i].WindowUS < 1 {
			v.t.Fatalf("limit %+v", limits[i])
		}
		for j := 0; j < i; j++ {
			if spaces[i] == spaces[j] && segs[i] == segs[j] {
				v.t.Fatalf("two keys alike: %d %q", spaces[i], segs[i])
			}
		}
		out[i] = algorithms.Outcome{OK: true, Remaining: limits[i].Limit - 1}
	}
	return true
}

// TestTrustedEntryRules: whatever the configuration and request, the engine
// gives a TrustingBackend's trusted entry only arguments within its rules
// (random configurations of every dimension, random identities including
// ones that need escaping, are marked, or are hashed; random times).
func TestTrustedEntryRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	ids := []string{"u", "alice@example.com", "a b:c", "\x01a%20b", strings.Repeat("x", 200), "é", "search", "{t}"}
	pick := func() string { return ids[rng.IntN(len(ids))] }
	calls := 0
	for round := 0; round < 40; round++ {
		var parts []string
		for _, dim := range []string{"by_user", "by_user_per_server", "by_tenant"} {
			if rng.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf(`%q:{"limit":%d,"window_s":60}`, dim, 1+rng.IntN(9)))
			}
		}
		var tools []string
		for i, tool := range rng.Perm(6)[:rng.IntN(7)] {
			tools = append(tools, fmt.Sprintf(`%q:{"limit":%d,"window_s":1}`, []string{"search", "a b:c", "fetch", "x", "read", "list"}[tool], 1+i))
		}
		if len(tools) > 0 {
			parts = append(parts, `"by_tool":{`+strings.Join(tools, ",")+`}`)
		}
		v := &vouchChecker{t: t, spaces: map[string]uint32{}}
		cfg, err := core.ParseConfig([]byte("{" + strings.Join(parts, ",") + "}"))
		if err != nil {
			t.Fatal(err)
		}
		v.kind = cfg.Algorithm
		l, err := core.NewLimiter(cfg, v)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			r := core.Request{User: pick(), Tenant: pick(), Tool: pick(), NowUS: rng.Int64N(core.MaxNowUS + 1)}
			if rng.IntN(2) == 0 {
				r.Server = pick()
			}
			if rng.IntN(4) == 0 {
				r.NowUS = 0
			}
			if _, err := l.Evaluate(context.Background(), r); err != nil && !errors.Is(err, core.ErrBadArgument) {
				t.Fatal(err)
			}
		}
		calls += v.calls
	}
	if calls < 1000 {
		t.Fatalf("only %d calls reached the trusted entry", calls)
	}
}

// TestNewLimiterChecksLimits: a Config built without ParseConfig cannot give
// the trusted entry a limit or window below 1.
func TestNewLimiterChecksLimits(t *testing.T) {
	good := algorithms.Limit{Limit: 1, WindowUS: 1}
	for name, cfg := range map[string]core.Config{
		"user limit 0":     {ByUser: &algorithms.Limit{Limit: 0, WindowUS: 1}},
		"tenant window 0":  {ByUser: &good, ByTenant: &algorithms.Limit{Limit: 1, WindowUS: 0}},
		"per-server limit": {ByUserPerServer: &algorithms.Limit{Limit: -1, WindowUS: 1}},
		"tool window -1":   {ByTool: map[string]algorithms.Limit{"x": {Limit: 1, WindowUS: -1}}},
	} {
		cfg.KeyPrefix = "rl"
		v := &vouchChecker{t: t, spaces: map[string]uint32{}}
		if _, err := core.NewLimiter(cfg, v); !errors.Is(err, core.ErrConfig) {
			t.Errorf("%s: error %v, want ErrConfig", name, err)
		}
	}
}
