package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/memory"
	"github.com/rate-limiter-go/rate_limiter_go/core"
)

const sec = core.SecondUS

// recorder is a Backend that records the keys and limits it is asked about
// and answers with fixed outcomes: it tests the engine's side of the contract.
type recorder struct {
	keys     []string
	limits   []algorithms.Limit
	admitted bool
	outs     []algorithms.Outcome
	err      error
	calls    int
	kind     algorithms.Kind // set by limiter to the configuration's
}

func (r *recorder) Algorithm() algorithms.Kind { return r.kind }

func (r *recorder) Evaluate(_ context.Context, keys []string, limits []algorithms.Limit, _ int64, out []algorithms.Outcome) (bool, error) {
	r.calls++
	r.keys = append([]string(nil), keys...)
	r.limits = append([]algorithms.Limit(nil), limits...)
	if r.err != nil {
		return false, r.err
	}
	copy(out, r.outs)
	return r.admitted, nil
}

func (r *recorder) Close() error { return nil }

func limiter(t *testing.T, cfgJSON string, b core.Backend) *core.Limiter {
	t.Helper()
	cfg, err := core.ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	switch r := b.(type) {
	case *recorder:
		r.kind = cfg.Algorithm
	case *localRecorder:
		r.kind = cfg.Algorithm
	}
	l, err := core.NewLimiter(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// memLimiter is a limiter of cfgJSON on a memory store of 100 keys.
func memLimiter(t *testing.T, cfgJSON string) *core.Limiter {
	t.Helper()
	cfg, err := core.ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	store, err := memory.New(cfg.Algorithm, 100)
	if err != nil {
		t.Fatal(err)
	}
	return limiter(t, cfgJSON, store)
}

// TestBackendOfAnotherAlgorithm: a backend serves the one algorithm it was
// made for; binding it to another configuration is an error.
func TestBackendOfAnotherAlgorithm(t *testing.T) {
	cfg, err := core.ParseConfig([]byte(`{"algorithm":"sliding_window","by_user":{"limit":1,"window_s":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	store, err := memory.New(algorithms.TokenBucket, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.NewLimiter(cfg, store); !errors.Is(err, core.ErrConfig) {
		t.Fatalf("error %v, want ErrConfig", err)
	}
}

const allDims = `{"algorithm":"%s","by_user":{"limit":10,"window_s":60},"by_tenant":{"limit":5,"window_s":1},
	"by_tool":{"search":{"limit":3,"window_s":3600},"a b:c":{"limit":2,"window_s":1}}}`

func TestKeysAndApplicableDimensions(t *testing.T) {
	tests := []struct {
		name, algo, user, tenant, tool string
		want                           []string
	}{
		{"§6 user example", "fixed_window", "alice@example.com", "", "",
			[]string{"rl:fw:user:10/60:{alice@example.com}"}},
		{"§6 tenant example", "token_bucket", "u", "team:1 {a}", "",
			[]string{"rl:tb:user:10/60:{u}", "rl:tb:tenant:5/1:{team%3A1%20%7Ba%7D}"}},
		{"§5 all three in order", "sliding_window", "u", "t", "search",
			[]string{"rl:sw:user:10/60:{u}", "rl:sw:tenant:5/1:{t}", "rl:sw:tool:3/3600:{search}"}},
		{"§5 tool not configured", "fixed_window", "u", "t", "other", []string{"rl:fw:user:10/60:{u}", "rl:fw:tenant:5/1:{t}"}},
		{"§6 tool name escaped", "fixed_window", "u", "", "a b:c", []string{"rl:fw:user:10/60:{u}", "rl:fw:tool:2/1:{a%20b%3Ac}"}},
		{"marked identity used verbatim", "fixed_window", "\x01a%00b", "\x01%ED%A0%80", "",
			[]string{"rl:fw:user:10/60:{a%00b}", "rl:fw:tenant:5/1:{%ED%A0%80}"}},
		{"marked tool matches the escaped name", "fixed_window", "u", "", "\x01a%20b%3Ac",
			[]string{"rl:fw:user:10/60:{u}", "rl:fw:tool:2/1:{a%20b%3Ac}"}},
		{"long identity hashed", "fixed_window", strings.Repeat("x", 129), "", "",
			[]string{"rl:fw:user:10/60:{" + core.EscapeIdentity(strings.Repeat("x", 129)) + "}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{admitted: true, outs: make([]algorithms.Outcome, 3)}
			l := limiter(t, fmt.Sprintf(allDims, tt.algo), r)
			if _, err := l.Evaluate(context.Background(), core.Request{User: tt.user, Tenant: tt.tenant, Tool: tt.tool, NowUS: 1}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(r.keys) != fmt.Sprint(tt.want) {
				t.Fatalf("keys %q, want %q", r.keys, tt.want)
			}
		})
	}
}

// TestToolLookup: a configured tool is found, and only its own name finds
// it, whether the limiter scans its few tools or looks them up in a map
// (more than 4): names of equal length, prefixes, and a marked (escaped)
// spelling of a configured name.
func TestToolLookup(t *testing.T) {
	names := []string{"search", "fetch", "a b:c", "srch", "read", "write", "delete", "list", "grep"}
	for _, count := range []int{1, 4, 5, 9} {
		t.Run(fmt.Sprint(count, " tools"), func(t *testing.T) {
			var tools []string
			for i, name := range names[:count] {
				tools = append(tools, fmt.Sprintf(`%q:{"limit":%d,"window_s":60}`, name, i+1))
			}
			r := &recorder{admitted: true, outs: make([]algorithms.Outcome, 2)}
			l := limiter(t, `{"by_user":{"limit":10,"window_s":60},"by_tool":{`+strings.Join(tools, ",")+`}}`, r)
			probes := []struct {
				tool, wantKey string
			}{
				{"search", "rl:fw:tool:1/60:{search}"},
				{names[count-1], fmt.Sprintf("rl:fw:tool:%d/60:{%s}", count, core.EscapeIdentity(names[count-1]))},
				{"\x01" + core.EscapeIdentity(names[count-1]), fmt.Sprintf("rl:fw:tool:%d/60:{%s}", count, core.EscapeIdentity(names[count-1]))},
				{"searc", ""}, {"searcH", ""}, {"search ", ""}, {"zzzzzz", ""}, {names[len(names)-1] + "x", ""},
			}
			if count < len(names) {
				probes = append(probes, struct{ tool, wantKey string }{names[count], ""})
			}
			for _, p := range probes {
				if _, err := l.Evaluate(context.Background(), core.Request{User: "u", Tool: p.tool, NowUS: 1}); err != nil {
					t.Fatal(err)
				}
				want := []string{"rl:fw:user:10/60:{u}"}
				if p.wantKey != "" {
					want = append(want, p.wantKey)
				}
				if fmt.Sprint(r.keys) != fmt.Sprint(want) {
					t.Fatalf("tool %q: keys %q, want %q", p.tool, r.keys, want)
				}
			}
		})
	}
}

const fourDims = `{"algorithm":"%s","by_user":{"limit":10,"window_s":60},
	"by_user_per_server":{"limit":4,"window_s":60},"by_tenant":{"limit":5,"window_s":1},
	"by_tool":{"search":{"limit":3,"window_s":3600}}}`

// TestUserPerServerKeys covers §5 (user_per_server applies only with a
// server, in second place) and §6 (its composed, escaped, hashed identity).
func TestUserPerServerKeys(t *testing.T) {
	composed := strings.Repeat("a", 64) + ":" + strings.Repeat("b", 64) // 129 bytes
	sum := sha256.Sum256([]byte(composed))
	longUser := core.EscapeIdentity(strings.Repeat("u", 200)) // hashed on its own: 65 bytes
	tests := []struct {
		name, algo string
		r          core.Request
		want       []string
	}{
		{"§6 example", "sliding_window", core.Request{User: "bob", Server: "srv 1"},
			[]string{"rl:sw:user:10/60:{bob}", "rl:sw:user_per_server:4/60:{bob}:srv%201"}},
		{"§5 all four in order", "fixed_window", core.Request{User: "u", Server: "s", Tenant: "t", Tool: "search"},
			[]string{"rl:fw:user:10/60:{u}", "rl:fw:user_per_server:4/60:{u}:s", "rl:fw:tenant:5/1:{t}",
				"rl:fw:tool:3/3600:{search}"}},
		{"§5 no server: skipped", "token_bucket", core.Request{User: "u", Tenant: "t"},
			[]string{"rl:tb:user:10/60:{u}", "rl:tb:tenant:5/1:{t}"}},
		{"colons in both parts are escaped", "fixed_window", core.Request{User: "a:b", Server: "c:d"},
			[]string{"rl:fw:user:10/60:{a%3Ab}", "rl:fw:user_per_server:4/60:{a%3Ab}:c%3Ad"}},
		{"marked parts used verbatim", "fixed_window", core.Request{User: "\x01a%00b", Server: "\x01%ED%A0%80"},
			[]string{"rl:fw:user:10/60:{a%00b}", "rl:fw:user_per_server:4/60:{a%00b}:%ED%A0%80"}},
		{"128 bytes composed: kept", "fixed_window",
			core.Request{User: strings.Repeat("a", 63), Server: strings.Repeat("b", 64)},
			[]string{"rl:fw:user:10/60:{" + strings.Repeat("a", 63) + "}",
				"rl:fw:user_per_server:4/60:{" + strings.Repeat("a", 63) + "}:" + strings.Repeat("b", 64)}},
		{"129 bytes composed: hashed", "fixed_window",
			core.Request{User: strings.Repeat("a", 64), Server: strings.Repeat("b", 64)},
			[]string{"rl:fw:user:10/60:{" + strings.Repeat("a", 64) + "}",
				"rl:fw:user_per_server:4/60:{~" + hex.EncodeToString(sum[:]) + "}"}},
		{"long user hashed first, then kept", "fixed_window", core.Request{User: strings.Repeat("u", 200), Server: "s"},
			[]string{"rl:fw:user:10/60:{" + longUser + "}", "rl:fw:user_per_server:4/60:{" + longUser + "}:s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{admitted: true, outs: make([]algorithms.Outcome, 4)}
			l := limiter(t, fmt.Sprintf(fourDims, tt.algo), r)
			tt.r.NowUS = 1
			if _, err := l.Evaluate(context.Background(), tt.r); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(r.keys) != fmt.Sprint(tt.want) {
				t.Fatalf("keys %q, want %q", r.keys, tt.want)
			}
			for _, k := range r.keys {
				if len(k) > 227 {
					t.Fatalf("key of %d bytes, §6 allows 227", len(k))
				}
			}
		})
	}
}

// TestUserPerServerReported covers §4 with four dimensions: the reported
// dimension and its limit.
func TestUserPerServerReported(t *testing.T) {
	tests := []struct {
		name     string
		admitted bool
		outs     []algorithms.Outcome
		want     core.Decision
	}{
		{"admitted: user_per_server least remaining", true, []algorithms.Outcome{
			{OK: true, Remaining: 9}, {OK: true, Remaining: 3, ResetAtUS: 60 * sec}, {OK: true, Remaining: 4},
			{OK: true, Remaining: 3}},
			core.Decision{Admitted: true, Dimension: core.DimUserPerServer, Limit: 4, Remaining: 3, ResetAtUnix: 60}},
		{"admitted: tie with user goes to user", true, []algorithms.Outcome{
			{OK: true, Remaining: 1, ResetAtUS: sec}, {OK: true, Remaining: 1}, {OK: true, Remaining: 4},
			{OK: true, Remaining: 2}},
			core.Decision{Admitted: true, Dimension: core.DimUser, Limit: 10, Remaining: 1, ResetAtUnix: 1}},
		{"blocked: tie with tenant goes to user_per_server", false, []algorithms.Outcome{
			{OK: true, Remaining: 1}, {OK: false, RetryAfterUS: sec, ResetAtUS: 2 * sec},
			{OK: false, RetryAfterUS: sec}, {OK: true, Remaining: 1}},
			core.Decision{Admitted: false, Dimension: core.DimUserPerServer, Limit: 4, ResetAtUnix: 2, RetryAfterS: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{admitted: tt.admitted, outs: tt.outs}
			l := limiter(t, fmt.Sprintf(fourDims, "fixed_window"), r)
			d, err := l.Evaluate(context.Background(), core.Request{User: "u", Server: "s", Tenant: "t", Tool: "search", NowUS: 1})
			if err != nil || d != tt.want {
				t.Fatalf("got %+v, %v; want %+v", d, err, tt.want)
			}
			if d.Dimension.String() != map[core.Dimension]string{core.DimUser: "user",
				core.DimUserPerServer: "user_per_server"}[d.Dimension] {
				t.Fatalf("dimension name %q", d.Dimension)
			}
		})
	}
}

// TestUserPerServerAllOrNothing: on the memory backend, a request refused
// by any one of four dimensions consumes nothing in the other three (§4).
func TestUserPerServerAllOrNothing(t *testing.T) {
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			cfg := `{"algorithm":"` + algo + `","by_user":{"limit":3,"window_s":60},` +
				`"by_user_per_server":{"limit":1,"window_s":60},"by_tenant":{"limit":3,"window_s":60},` +
				`"by_tool":{"search":{"limit":3,"window_s":60}}}`
			l := memLimiter(t, cfg)
			ev := func(server string) core.Decision {
				d, err := l.Evaluate(context.Background(), core.Request{User: "u", Server: server, Tenant: "t", Tool: "search", NowUS: 60 * sec})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			if d := ev("s1"); !d.Admitted || d.Dimension != core.DimUserPerServer || d.Remaining != 0 {
				t.Fatalf("first: %+v", d)
			}
			for i := 0; i < 3; i++ {
				if d := ev("s1"); d.Admitted || d.Dimension != core.DimUserPerServer {
					t.Fatalf("refusal %d: %+v", i, d)
				}
			}
			// The refusals spent nothing: user, tenant and tool each have 2 of 3 left.
			if d := ev("s2"); !d.Admitted || d.Dimension != core.DimUserPerServer || d.Remaining != 0 {
				t.Fatalf("other server: %+v", d)
			}
			if d := ev(""); !d.Admitted || d.Dimension != core.DimUser || d.Remaining != 0 {
				t.Fatalf("no server: %+v, want the third and last of user's 3", d)
			}
		})
	}
}

func TestNoDimensionApplies(t *testing.T) {
	r := &recorder{}
	l := limiter(t, `{"by_tenant":{"limit":1,"window_s":1},"by_tool":{"x":{"limit":1,"window_s":1}}}`, r)
	d, err := l.Evaluate(context.Background(), core.Request{User: "u", Tool: "y", NowUS: 0})
	if err != nil || d != (core.Decision{Admitted: true, Dimension: core.DimNone}) || r.calls != 0 {
		t.Fatalf("got %+v, %v after %d backend calls; want admitted, no dimension, no call", d, err, r.calls)
	}
}

// TestReportedAndHeaders covers §4's choice of the reported dimension and §7's rounding.
func TestReportedAndHeaders(t *testing.T) {
	tests := []struct {
		name     string
		admitted bool
		outs     []algorithms.Outcome
		want     core.Decision
	}{
		{"admitted: least remaining", true, []algorithms.Outcome{
			{OK: true, Remaining: 9, ResetAtUS: 60 * sec}, {OK: true, Remaining: 4, ResetAtUS: 2*sec + 1}, {OK: true, Remaining: 7}},
			core.Decision{Admitted: true, Dimension: core.DimTenant, Limit: 5, Remaining: 4, ResetAtUnix: 3}},
		{"admitted: tie goes to the earliest", true, []algorithms.Outcome{
			{OK: true, Remaining: 2, ResetAtUS: 5 * sec}, {OK: true, Remaining: 3}, {OK: true, Remaining: 2, ResetAtUS: 9 * sec}},
			core.Decision{Admitted: true, Dimension: core.DimUser, Limit: 10, Remaining: 2, ResetAtUnix: 5}},
		{"blocked: largest retry among refusers", false, []algorithms.Outcome{
			{OK: false, RetryAfterUS: 500_000, ResetAtUS: 10 * sec}, {OK: true, Remaining: 5, ResetAtUS: 99 * sec},
			{OK: false, RetryAfterUS: 1_000_001, ResetAtUS: 11*sec + 1}},
			core.Decision{Admitted: false, Dimension: core.DimTool, Limit: 3, ResetAtUnix: 12, RetryAfterS: 2}},
		{"blocked: tie goes to the earliest, Retry-After at least 1", false, []algorithms.Outcome{
			{OK: true, Remaining: 1}, {OK: false, RetryAfterUS: 1, ResetAtUS: 7 * sec}, {OK: false, RetryAfterUS: 1}},
			core.Decision{Admitted: false, Dimension: core.DimTenant, Limit: 5, ResetAtUnix: 7, RetryAfterS: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{admitted: tt.admitted, outs: tt.outs}
			l := limiter(t, fmt.Sprintf(allDims, "fixed_window"), r)
			d, err := l.Evaluate(context.Background(), core.Request{User: "u", Tenant: "t", Tool: "search", NowUS: 1})
			if err != nil || d != tt.want {
				t.Fatalf("got %+v, %v; want %+v", d, err, tt.want)
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	r := &recorder{admitted: true, outs: make([]algorithms.Outcome, 3)}
	l := limiter(t, fmt.Sprintf(allDims, "fixed_window"), r)
	tests := []struct {
		name               string
		user, tenant, tool string
		now                int64
	}{
		{"negative time", "u", "", "", -1},
		{"time beyond 2^52", "u", "", "", core.MaxNowUS + 1},
		{"empty user", "", "", "", 1},
		{"marked user not escaped", "\x01a:b", "", "", 1},
		{"marked empty tenant", "u", "\x01", "", 1},
		{"marked tool not escaped", "u", "", "\x01a b", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Evaluate(context.Background(), core.Request{User: tt.user, Tenant: tt.tenant, Tool: tt.tool, NowUS: tt.now})
			if !errors.Is(err, core.ErrBadArgument) {
				t.Fatalf("error %v, want ErrBadArgument", err)
			}
			if r.calls != 0 {
				t.Fatalf("backend called %d times", r.calls)
			}
		})
	}
}

func TestBackendErrorWrapped(t *testing.T) {
	cause := errors.New("connection refused")
	l := limiter(t, fmt.Sprintf(allDims, "fixed_window"), &recorder{err: cause})
	_, err := l.Evaluate(context.Background(), core.Request{User: "u", NowUS: 0})
	if !errors.Is(err, core.ErrBackend) || !errors.Is(err, cause) {
		t.Fatalf("error %v: want ErrBackend wrapping the cause", err)
	}
}

// TestAllOrNothing drives the memory backend: a request refused by one
// dimension consumes nothing in the others (§4).
func TestAllOrNothing(t *testing.T) {
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			l := memLimiter(t, fmt.Sprintf(`{"algorithm":%q,"by_user":{"limit":3,"window_s":60},
				"by_tool":{"a":{"limit":1,"window_s":60},"b":{"limit":4,"window_s":60}}}`, algo))
			steps := []struct {
				user, tool string
				admitted   bool
				dim        core.Dimension
				remaining  int64
			}{
				{"u", "a", true, core.DimTool, 0},  // user 2 left, tool a 0 left
				{"u", "a", false, core.DimTool, 0}, // refused by tool a: user keeps 2
				{"u", "a", false, core.DimTool, 0},
				{"u", "b", true, core.DimUser, 1},  // user 1 left, tool b 3 left
				{"u", "b", true, core.DimUser, 0},  // user 0 left, tool b 2 left
				{"u", "b", false, core.DimUser, 0}, // refused by user: tool b keeps 2
				{"u", "", false, core.DimUser, 0},
				{"v", "b", true, core.DimTool, 1}, // tool b 1 left: the refused requests spent nothing
			}
			now := 1_700_000_000 * sec
			for i, st := range steps {
				d, err := l.Evaluate(context.Background(), core.Request{User: st.user, Tool: st.tool, NowUS: now})
				if err != nil || d.Admitted != st.admitted || d.Dimension != st.dim || d.Remaining != st.remaining {
					t.Fatalf("step %d: got %+v, %v; want admitted=%v dim=%v remaining=%d",
						i, d, err, st.admitted, st.dim, st.remaining)
				}
			}
		})
	}
}

// TestEvaluateAllocs checks the memory hot path allocates nothing per call
// once the keys exist.
func TestEvaluateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	l := memLimiter(t, fmt.Sprintf(allDims, "token_bucket"))
	ctx := context.Background()
	now := int64(1_700_000_000) * sec
	allocs := testing.AllocsPerRun(1000, func() {
		now += 1000
		if _, err := l.Evaluate(ctx, core.Request{User: "alice@example.com", Tenant: "team:1", Tool: "search", NowUS: now}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call, want 0", allocs)
	}
	// Four dimensions, identities long enough to be hashed (each part and the
	// composed user_per_server one). Fixed window, and every call within one
	// window: keys whose state expired are evicted and re-created, which
	// allocates (docs/engine.md, "The memory store").
	long := core.Request{User: strings.Repeat("u", 200), Server: strings.Repeat("s:", 40), Tenant: "team:1", Tool: "search"}
	for _, r := range []core.Request{{User: "alice@example.com", Server: "srv-1", Tenant: "team:1", Tool: "search"}, long} {
		l4 := memLimiter(t, fmt.Sprintf(fourDims, "fixed_window"))
		r.NowUS = int64(1_700_000_000) * sec
		allocs = testing.AllocsPerRun(1000, func() {
			r.NowUS++
			if _, err := l4.Evaluate(ctx, r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("user_per_server %d bytes: %v allocations per call, want 0", len(r.User)+len(r.Server), allocs)
		}
	}
}

// keysOnly hides a backend's SegmentedBackend (and KeyBorrower) methods, so
// the limiter composes key strings for it.
type keysOnly struct{ core.Backend }

// TestSegmentsMatchKeys: the memory store given segments (no key strings)
// decides exactly as one given the composed keys, for identities that are
// plain, escaped, hashed, marked, and marked forms of each other (which name
// the same key, §6), in every dimension and algorithm.
func TestSegmentsMatchKeys(t *testing.T) {
	long := strings.Repeat("x", 129)
	users := []string{"alice", "a b", "\x01a%20b", "a%20b", "\x01alice", long, "\x01" + core.EscapeIdentity(long),
		strings.Repeat("y", 128), strings.Repeat(" ", 50), "\x01" + core.EscapeIdentity(strings.Repeat(" ", 50))}
	servers := []string{"", "s", "s 1", "\x01s%201", strings.Repeat("s", 100)}
	tenants := []string{"", "t", "team:1", "\x01team%3A1"}
	tools := []string{"", "search", "a b:c", "\x01a%20b%3Ac", "other"}
	const cfg = `{"algorithm":"%s","by_user":{"limit":4,"window_s":60},
		"by_user_per_server":{"limit":3,"window_s":60},"by_tenant":{"limit":6,"window_s":60},
		"by_tool":{"search":{"limit":5,"window_s":60},"a b:c":{"limit":2,"window_s":60}}}`
	for _, algo := range []string{"fixed_window", "sliding_window", "token_bucket"} {
		t.Run(algo, func(t *testing.T) {
			parsed, err := core.ParseConfig([]byte(fmt.Sprintf(cfg, algo)))
			if err != nil {
				t.Fatal(err)
			}
			var ls [2]*core.Limiter
			for i := range ls {
				store, err := memory.New(parsed.Algorithm, 1000)
				if err != nil {
					t.Fatal(err)
				}
				var b core.Backend = store
				if i == 1 {
					b = keysOnly{store}
				}
				if ls[i], err = core.NewLimiter(parsed, b); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			now := 1_700_000_000 * sec
			for step := 0; step < 3000; step++ {
				now += int64(rng.IntN(3_000_000)) // about the limits' rates: counts hover near the limits
				r := core.Request{User: users[rng.IntN(len(users))], Server: servers[rng.IntN(len(servers))],
					Tenant: tenants[rng.IntN(len(tenants))], Tool: tools[rng.IntN(len(tools))], NowUS: now}
				seg, err1 := ls[0].Evaluate(context.Background(), r)
				key, err2 := ls[1].Evaluate(context.Background(), r)
				if seg != key || (err1 == nil) != (err2 == nil) {
					t.Fatalf("step %d, %+q: segments %+v %v, keys %+v %v", step, []string{r.User, r.Server, r.Tenant, r.Tool}, seg, err1, key, err2)
				}
			}
		})
	}
}

// localRecorder is a recorder that is also a LocalAnswerer: it answers
// locally with its outcomes when local is set, recording the keys it saw.
type localRecorder struct {
	recorder
	local     bool
	localKeys []string
}

func (r *localRecorder) AnswerLocally(keys []string, _ []algorithms.Limit, _ int64, out []algorithms.Outcome) bool {
	r.localKeys = append([]string(nil), keys...)
	if !r.local {
		return false
	}
	copy(out, r.outs)
	return true
}

// TestEvaluateLocal: EvaluateLocal answers what needs no I/O (no dimension
// applies, or the backend's local answer) as Evaluate would, asks the backend
// with Evaluate's keys, and otherwise evaluates nothing.
func TestEvaluateLocal(t *testing.T) {
	refusal := []algorithms.Outcome{{OK: true, Remaining: 10}, {OK: false, RetryAfterUS: 1_500_000, ResetAtUS: 9 * sec}, {OK: true, Remaining: 3}}
	req := core.Request{User: "u", Tenant: "t", Tool: "search", NowUS: 1}
	tests := []struct {
		name    string
		backend core.Backend
		req     core.Request
		wantOK  bool
		want    core.Decision
	}{
		{"local refusal", &localRecorder{recorder: recorder{outs: refusal}, local: true}, req, true,
			core.Decision{Admitted: false, Dimension: core.DimTenant, Limit: 5, ResetAtUnix: 9, RetryAfterS: 2}},
		{"backend must be asked", &localRecorder{recorder: recorder{outs: refusal}}, req, false, core.Decision{}},
		{"backend without local answers", &recorder{outs: refusal}, req, false, core.Decision{}},
		{"no dimension applies", &recorder{}, core.Request{User: "u", Tool: "other", NowUS: 1}, true,
			core.Decision{Admitted: true, Dimension: core.DimNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fmt.Sprintf(allDims, "fixed_window")
			if _, ok := tt.backend.(*recorder); ok {
				cfg = `{"by_tenant":{"limit":5,"window_s":1},"by_tool":{"search":{"limit":3,"window_s":1}}}`
			}
			l := limiter(t, cfg, tt.backend)
			d, ok, err := l.EvaluateLocal(tt.req)
			if err != nil || ok != tt.wantOK || d != tt.want {
				t.Fatalf("got %+v, %v, %v; want %+v, %v", d, ok, err, tt.want, tt.wantOK)
			}
			if lr, ok := tt.backend.(*localRecorder); ok {
				if lr.calls != 0 {
					t.Fatalf("Evaluate called %d times", lr.calls)
				}
				if _, err := l.Evaluate(context.Background(), tt.req); err != nil {
					t.Fatal(err)
				}
				if strings.Join(lr.localKeys, "|") != strings.Join(lr.keys, "|") {
					t.Fatalf("local keys %q, Evaluate's %q", lr.localKeys, lr.keys)
				}
			}
		})
	}
	l := limiter(t, fmt.Sprintf(allDims, "fixed_window"), &localRecorder{local: true})
	if _, _, err := l.EvaluateLocal(core.Request{User: "", NowUS: 1}); !errors.Is(err, core.ErrBadArgument) {
		t.Fatalf("empty user: error %v, want ErrBadArgument", err)
	}
}
