package tests_go

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/limiter"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// deployConfig is a canonical JSON with three dimensions and two tools.
func deployConfig(algorithm, url, prefix, extra string) string {
	return fmt.Sprintf(`{"algorithm":%q,"backend":"redis","redis_url":%q,"redis_key_prefix":%q,`+
		`"by_user":{"limit":4,"window_s":1},"by_tenant":{"limit":6,"window_s":1},`+
		`"by_tool":{"search":{"limit":3,"window_s":1},"fetch":{"limit":5,"window_s":1}},`+
		`"redis_timeout_ms":2000,"redis_connect_timeout_ms":2000%s}`, algorithm, url, prefix, extra)
}

// openLimiter opens a limiter for configJSON, closed at the end of the test.
func openLimiter(t *testing.T, configJSON string) *limiter.Limiter {
	t.Helper()
	l, err := limiter.Open(t.Name(), configJSON)
	if err != nil {
		t.Fatalf("limiter.Open: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// decideAll evaluates reqs in order on l; an error fails the test.
func decideAll(t *testing.T, l *limiter.Limiter, reqs []limiter.Request) []limiter.Decision {
	t.Helper()
	out := make([]limiter.Decision, len(reqs))
	for i, r := range reqs {
		d, err := l.Evaluate(context.Background(), r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		out[i] = d
	}
	return out
}

// The hash slot Go computes is the one the server computes.
func TestKeySlotIsTheServers(t *testing.T) {
	c := redistest.StartCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	for _, k := range []string{"rl:fw:user:10/60:{alice}", "rl:fw:user_per_server:10/60:{alice}:s", "plain", "a{}b",
		"x{y}z{w}", "{}{y}", "caf\u00e9{\u00e9t\u00e9}", "{a", "rl:tb:tenant:5/1:{t%3A1}"} {
		want, err := cl.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := redis.KeySlot(k); int64(got) != want {
			t.Errorf("KeySlot(%q) = %d, server says %d", k, got, want)
		}
	}
}

// The Go engine decides on a Cluster (a request's dimensions on different
// primaries) and on Sentinel as on one Redis: the same requests at the same
// (forward-moving) times get the same answers.
func TestDeploymentsDecideAsOneRedis(t *testing.T) {
	c := redistest.StartCluster(t)
	d := redistest.StartSentinel(t)
	one := redistest.Start(t)
	deployments := map[string]string{
		"cluster": `,"redis_mode":"cluster"`,
		"sentinel": fmt.Sprintf(`,"redis_mode":"sentinel","redis_sentinels":[%q,%q,%q],"redis_sentinel_master":%q`,
			d.Sentinels[0].Addr, d.Sentinels[1].Addr, d.Sentinels[2].Addr, redistest.SentinelMaster),
	}
	urls := map[string]string{"cluster": c.SeedURL(), "sentinel": "redis://ignored.invalid:1/0"}
	for _, name := range []string{"cluster/fixed_window", "cluster/sliding_window", "cluster/token_bucket",
		"sentinel/fixed_window", "sentinel/sliding_window", "sentinel/token_bucket"} {
		deployment, algorithm, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(algorithm))))
			users, tenants, tools := []string{"alice", "bob", "carol"}, []string{"", "t1", "t2"}, []string{"", "search", "fetch"}
			now := time.Now().UnixMicro() + 300_000_000 // ahead of the clock: PEXPIREAT keeps the state alive
			var reqs []limiter.Request
			for i := 0; i < 120; i++ {
				now += rng.Int64N(90_000)
				reqs = append(reqs, limiter.Request{User: users[rng.IntN(3)], Tenant: tenants[rng.IntN(3)],
					Tool: tools[rng.IntN(3)], NowUS: now})
			}
			prefix := uniquePrefix(t)
			decide := func(l *limiter.Limiter) []limiter.Decision { return decideAll(t, l, reqs) }
			// Remembered refusals (§12) are off: a Cluster with three dimensions does not
			// remember, and a local refusal reports only the keys it remembers.
			const noLocal = `,"redis_blocked_max_keys":0`
			want := decide(openLimiter(t, deployConfig(algorithm, one.URL(), prefix, noLocal)))
			got := decide(openLimiter(t, deployConfig(algorithm, urls[deployment], prefix, deployments[deployment]+noLocal)))
			if !reflect.DeepEqual(got, want) {
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("request %d %+v: %s %+v, one Redis %+v", i, reqs[i], deployment, got[i], want[i])
					}
				}
			}
			blocked := 0
			for _, d := range want {
				if !d.Admitted {
					blocked++
				}
			}
			if blocked == 0 || blocked == len(want) {
				t.Fatalf("%d of %d blocked: the sequence tests nothing", blocked, len(want))
			}
		})
	}
}

// With the three dimensions on three different primaries, 200 concurrent
// requests never admit more than the tightest limit, and every counter
// settles to the admitted count: once the give-backs have landed, a refusal
// consumed nothing anywhere. Refusals in flight may hold units meanwhile
// and refuse others (§11.1, Bounds), so the burst may admit fewer; requests
// made one at a time afterwards then admit exactly the rest of the limit.
func TestClusterConcurrentAllOrNothing(t *testing.T) {
	c := redistest.StartCluster(t)
	cl := c.Client(t)
	prefix := uniquePrefix(t)
	user, tenant, tool := spreadIdentities(t, c)
	l := openLimiter(t, fmt.Sprintf(`{"backend":"redis","redis_url":%q,"redis_key_prefix":%q,"redis_mode":"cluster",`+
		`"by_user":{"limit":50,"window_s":3600},"by_tenant":{"limit":30,"window_s":3600},`+
		`"by_tool":{"search":{"limit":40,"window_s":3600}},"redis_timeout_ms":5000,"redis_connect_timeout_ms":5000}`,
		c.SeedURL(), prefix))
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := l.Evaluate(context.Background(), limiter.Request{User: user, Tenant: tenant, Tool: tool})
			if err != nil {
				t.Error(err)
				return
			}
			if d.Admitted {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Every request of the burst may be refused: each holds units in the
	// groups that admitted it until its give-back lands, so with 200 in
	// flight the groups can refuse one another's requests (a fresh-clone run
	// under -race admitted 0). The bound is the tenant's limit.
	if admitted > 30 {
		t.Fatalf("admitted %d, over the tenant's 30", admitted)
	}
	ctx := context.Background()
	keys := []string{prefix + ":fw:user:50/3600:{" + user + "}", prefix + ":fw:tenant:30/3600:{" + tenant + "}",
		prefix + ":fw:tool:40/3600:{" + tool + "}"}
	for _, k := range keys {
		n, err := cl.HGet(ctx, k, "c").Int()
		if err != nil || n != admitted {
			t.Errorf("%s: count %d (%v), want the %d admitted", k, n, err, admitted)
		}
	}
	burst := admitted
	for i := 0; i < 40; i++ {
		d, err := l.Evaluate(ctx, limiter.Request{User: user, Tenant: tenant, Tool: tool})
		if err != nil {
			t.Fatal(err)
		}
		if d.Admitted {
			admitted++
		}
	}
	if admitted != 30 {
		t.Fatalf("burst admitted %d, then one at a time %d more: %d in all, want exactly 30", burst, admitted-burst, admitted)
	}
	t.Logf("burst of 200 admitted %d, one at a time then %d more", burst, admitted-burst)
	if lost := l.GiveBacksLost(); lost != 0 {
		t.Fatalf("%d give-backs lost", lost)
	}
}

// spreadIdentities returns a user and a tenant whose keys sit on two
// primaries other than the one of the tool "search" and of each other: a
// key's slot is its identity's, the hash tag (§6).
func spreadIdentities(t *testing.T, c *redistest.Cluster) (user, tenant, tool string) {
	t.Helper()
	tool = "search"
	used := map[int]bool{c.PrimaryFor(t, "{"+tool+"}").Port: true}
	pick := func(stem string) string {
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("%s%d", stem, i)
			if port := c.PrimaryFor(t, "{"+name+"}").Port; !used[port] {
				used[port] = true
				return name
			}
		}
		t.Fatal("no identity found on a free primary")
		return ""
	}
	return pick("u"), pick("t"), tool
}

// On Sentinel, the Go engine limits, and after a failover its decisions
// are written to the new primary within 2 s of its promotion.
func TestSentinelFollowsAFailover(t *testing.T) {
	d := redistest.StartSentinel(t)
	prefix := uniquePrefix(t)
	l := openLimiter(t, fmt.Sprintf(`{"backend":"redis","redis_url":"redis://ignored.invalid:1/0","redis_key_prefix":%q,`+
		`"redis_mode":"sentinel","redis_sentinels":[%q,%q,%q],"redis_sentinel_master":%q,`+
		`"by_user":{"limit":3,"window_s":3600},"redis_timeout_ms":1000,"redis_connect_timeout_ms":1000,`+
		`"redis_breaker_cooldown_ms":200}`, prefix, d.Sentinels[0].Addr, d.Sentinels[1].Addr, d.Sentinels[2].Addr,
		redistest.SentinelMaster))
	ctx := context.Background()
	var got []bool
	for i := 0; i < 4; i++ {
		dec, err := l.Evaluate(ctx, limiter.Request{User: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dec.Admitted)
	}
	if !reflect.DeepEqual(got, []bool{true, true, true, false}) {
		t.Fatalf("before the failover: %v", got)
	}
	before := d.CurrentPrimary(t)
	d.Failover(t)
	promoted := time.Now()
	newPrimary := goredis.NewClient(&goredis.Options{Addr: d.CurrentPrimary(t), DisableIdentity: true})
	defer func() { _ = newPrimary.Close() }()
	for attempt := 0; ; attempt++ {
		user := fmt.Sprintf("bob%d", attempt)
		dec, err := l.Evaluate(ctx, limiter.Request{User: user})
		if err == nil && dec.Admitted && newPrimary.Exists(ctx, prefix+":fw:user:3/3600:{"+user+"}").Val() == 1 {
			break
		}
		if time.Since(promoted) > 10*time.Second {
			t.Fatalf("no decision on the new primary 10 s after the failover from %s (last error %v)", before, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resumed := time.Since(promoted)
	t.Logf("sentinel failover: decisions on the new primary %v after its promotion", resumed)
	if resumed > 2*time.Second+200*time.Millisecond {
		t.Fatalf("decisions resumed on the new primary after %v, want within 2 s plus the breaker cooldown", resumed)
	}
}

// After SCRIPT FLUSH on every primary (what a failover to a replica looks
// like to the script cache, which is not replicated), the next request
// reloads the scripts and is decided; counts carry on.
func TestClusterReloadsFlushedScripts(t *testing.T) {
	c := redistest.StartCluster(t)
	cl := c.Client(t)
	ctx := context.Background()
	prefix := uniquePrefix(t)
	l := openLimiter(t, deployConfig("sliding_window", c.SeedURL(), prefix, `,"redis_mode":"cluster"`))
	req := limiter.Request{User: "alice", Tenant: "t1", Tool: "search"} // three groups: the give-back script too
	var remaining []int64
	for i := 0; i < 4; i++ {
		if i == 2 {
			if err := cl.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
				return n.ScriptFlush(ctx).Err()
			}); err != nil {
				t.Fatal(err)
			}
		}
		d, err := l.Evaluate(ctx, req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		remaining = append(remaining, d.Remaining)
	}
	// The tool (3/s) reports: 2, 1, 0 left, then refused with 0 left.
	if !reflect.DeepEqual(remaining, []int64{2, 1, 0, 0}) {
		t.Fatalf("remaining %v, want [2 1 0 0]", remaining)
	}
	// The refused fourth request was given back in the user's group too
	// (its give-back script was flushed as well).
	if n := cl.ZCard(ctx, prefix+":sw:user:4/1:{alice}").Val(); n != 3 || l.GiveBacksLost() != 0 {
		t.Fatalf("user entries %d (want 3), give-backs lost %d", n, l.GiveBacksLost())
	}
}

// A slot moves to another primary (MOVED and ASK redirections) while
// requests keep coming: no request is counted twice or lost, so the count on
// the new owner equals the admissions. Requests that failed meanwhile (a
// TRYAGAIN, say) are errors to the plugin, which applies fail_mode.
func TestClusterSlotMigrationUnderLoad(t *testing.T) {
	c := redistest.StartCluster(t)
	prefix := uniquePrefix(t)
	l := openLimiter(t, fmt.Sprintf(`{"backend":"redis","redis_url":%q,"redis_key_prefix":%q,"redis_mode":"cluster",`+
		`"by_user":{"limit":1000000,"window_s":3600},"redis_timeout_ms":1000,"redis_connect_timeout_ms":1000}`,
		c.SeedURL(), prefix))
	key := prefix + ":fw:user:1000000/3600:{mig}"
	from := c.PrimaryFor(t, key)
	var to *redistest.Server // another primary: the owner of some other tag's slot
	for i := 0; to == nil && i < 1000; i++ {
		if p := c.PrimaryFor(t, fmt.Sprintf("{other%d}", i)); p != from {
			to = p
		}
	}
	var admitted, failed atomic.Int64
	stop := make(chan struct{})
	wg := untilStopped(4, stop, func(int) {
		d, err := l.Evaluate(context.Background(), limiter.Request{User: "mig"})
		switch {
		case err != nil:
			failed.Add(1)
		case d.Admitted:
			admitted.Add(1)
		}
	})
	time.Sleep(300 * time.Millisecond)
	c.MigrateSlot(t, key, to, 300*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got := c.PrimaryFor(t, key); got != to {
		t.Fatalf("slot owner %s after the migration, want %s", got.Addr, to.Addr)
	}
	dst := goredis.NewClient(&goredis.Options{Addr: to.Addr, DisableIdentity: true})
	defer func() { _ = dst.Close() }()
	count, err := dst.HGet(context.Background(), key, "c").Int64()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("admitted %d, failed %d, counted on the new owner %d", admitted.Load(), failed.Load(), count)
	if count != admitted.Load() {
		t.Fatalf("counted %d on the new owner, admitted %d", count, admitted.Load())
	}
}
