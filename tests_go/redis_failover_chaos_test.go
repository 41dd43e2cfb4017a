package tests_go

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// failoverRun is what one failover under load measured (docs/reliability.md).
type failoverRun struct {
	Commit         string  `json:"commit"` // $RL_CHAOS_COMMIT: what was measured ("+dirty" when the tree was)
	LoadAverage    string  `json:"load_average"`
	Engine         string  `json:"engine"` // always "go": these runs call the Go library
	Driver         string  `json:"driver"` // "limiter": limiter.Evaluate, not the plugin hook (tools/chaos/failover_hook.py)
	Scenario       string  `json:"scenario"`
	Requests       int64   `json:"requests"`
	Failed         int64   `json:"failed"`          // Evaluate errors: the plugin applies fail_mode to these
	MaxCallMS      float64 `json:"max_call_ms"`     // the slowest Evaluate (budget: connect + command timeout, 200 ms)
	OutageS        float64 `json:"outage_s"`        // from the fault to the new primary's promotion
	ResumedAfterS  float64 `json:"resumed_after_s"` // from the promotion to the first decision after it
	AdmittedBefore int64   `json:"admitted_before_fault"`
	CountedAfter   int64   `json:"counted_after"` // what the new primary holds of the admissions before the fault
	// NetCountsLost: admissions acknowledged by the old primary and not
	// replicated before it died, minus writes that ran but whose reply was
	// lost to a timeout (those count without an admission). Can be negative.
	NetCountsLost int64 `json:"net_counts_lost"`
}

// chaosEnabled skips the long failover runs unless RL_CHAOS=1 (make chaos
// sets it); make test runs the fast deployment tests instead.
func chaosEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("RL_CHAOS") != "1" {
		t.Skip("a failover under load: run by make chaos (RL_CHAOS=1)")
	}
}

// recordRun appends r as one JSON line to $RL_CHAOS_OUT, if set.
func recordRun(t *testing.T, r failoverRun) {
	t.Helper()
	r.Commit = os.Getenv("RL_CHAOS_COMMIT")
	r.Engine, r.Driver = "go", "limiter"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	t.Logf("%+v", r)
	path := os.Getenv("RL_CHAOS_OUT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600) // #nosec G304 -- a results file the chaos target names
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	line, _ := json.Marshal(r)
	if _, err := fmt.Fprintln(f, string(line)); err != nil {
		t.Fatal(err)
	}
}

// load counts what 8 goroutines calling Evaluate saw: requests, failures,
// admissions before and after the fault, the first success after the
// promotion.
type load struct {
	requests, failed atomic.Int64
	admittedBefore   atomic.Int64
	admittedAfter    atomic.Int64
	faulted          atomic.Bool
	firstOKAfter     atomic.Int64 // Unix ns of the first success of a call started after the promotion mark
	maxCallNS        atomic.Int64
	promotedAtNS     atomic.Int64
}

// run starts the goroutines; they stop when stop is closed.
func (ld *load) run(l *limiter.Limiter, users []string, stop <-chan struct{}) *sync.WaitGroup {
	return untilStopped(8, stop, func(g int) {
		ld.requests.Add(1)
		start := time.Now().UnixNano()
		d, err := l.Evaluate(context.Background(), limiter.Request{User: users[g%len(users)]})
		raiseTo(&ld.maxCallNS, time.Now().UnixNano()-start)
		if err != nil {
			ld.failed.Add(1)
			time.Sleep(2 * time.Millisecond)
			return
		}
		switch {
		case d.Admitted && !ld.faulted.Load():
			ld.admittedBefore.Add(1)
		case d.Admitted:
			ld.admittedAfter.Add(1)
		}
		if p := ld.promotedAtNS.Load(); p != 0 && start >= p { // a call sent to the new primary
			ld.firstOKAfter.CompareAndSwap(0, time.Now().UnixNano())
		}
	})
}

// raiseTo stores x in v if it is larger than what v holds.
func raiseTo(v *atomic.Int64, x int64) {
	for m := v.Load(); x > m && !v.CompareAndSwap(m, x); m = v.Load() {
	}
}

// failoverConfig is the canonical JSON of the chaos runs: a limit never
// reached, short timeouts and a short breaker cooldown.
const failoverConfig = `{"backend":"redis","redis_key_prefix":%q,%s,` +
	`"by_user":{"limit":1000000,"window_s":3600},"redis_timeout_ms":100,"redis_connect_timeout_ms":100,` +
	`"redis_breaker_failures":5,"redis_breaker_cooldown_ms":200}`

// failoverUnderLoad drives l from 8 goroutines for the user "chaos" (one
// hash tag), calls fault after 2 s (it breaks the primary and returns once
// the new primary is promoted), waits for the first decision after the
// promotion, and returns what it measured. count reads the user's counter
// from the new primary afterwards. It fails the test when decisions do not
// resume within 2 s of the promotion.
func failoverUnderLoad(t *testing.T, scenario string, l *limiter.Limiter, fault func() time.Time,
	count func() int64) {
	t.Helper()
	var ld load
	stop := make(chan struct{})
	wg := ld.run(l, []string{"chaos"}, stop)
	time.Sleep(2 * time.Second)
	ld.faulted.Store(true)
	faultAt := time.Now()
	promotedAt := fault()
	ld.promotedAtNS.Store(promotedAt.UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for ld.firstOKAfter.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	first := ld.firstOKAfter.Load()
	if first == 0 {
		t.Fatalf("no decision within 10 s of the promotion")
	}
	r := failoverRun{
		Scenario: scenario, Requests: ld.requests.Load(), Failed: ld.failed.Load(),
		MaxCallMS: float64(ld.maxCallNS.Load()) / 1e6,
		OutageS:   promotedAt.Sub(faultAt).Seconds(), ResumedAfterS: time.Unix(0, first).Sub(promotedAt).Seconds(),
		AdmittedBefore: ld.admittedBefore.Load(),
		// Admissions after the fault went to the new primary; the rest of
		// its count is what survived of those before the fault.
		CountedAfter: count() - ld.admittedAfter.Load(),
	}
	r.NetCountsLost = r.AdmittedBefore - r.CountedAfter
	recordRun(t, r)
	if r.ResumedAfterS > 2 {
		t.Fatalf("decisions resumed %.2f s after the promotion, want within 2 s", r.ResumedAfterS)
	}
}

// clusterChaos starts a Cluster and a limiter on it for the failover runs,
// and returns the primary serving the user "chaos" and the user's key.
func clusterChaos(t *testing.T) (*redistest.Cluster, *redistest.Server, *limiter.Limiter, string) {
	t.Helper()
	c := redistest.StartCluster(t)
	prefix := uniquePrefix(t)
	l := openLimiter(t, fmt.Sprintf(failoverConfig, prefix, fmt.Sprintf(`"redis_url":%q,"redis_mode":"cluster"`, c.SeedURL())))
	return c, c.PrimaryFor(t, "{chaos}"), l, prefix + ":fw:user:1000000/3600:{chaos}"
}

// The Cluster primary serving the user's slot is killed (SIGKILL) under
// load: its replica takes over, requests fail meanwhile (the plugin applies
// fail_mode), none panics, and decisions resume within 2 s of the promotion.
func TestClusterPrimaryKilledUnderLoad(t *testing.T) {
	chaosEnabled(t)
	c, victim, l, key := clusterChaos(t)
	failoverUnderLoad(t, "cluster: kill -9 of the primary", l,
		func() time.Time { victim.Kill(); return waitPromotion(t, c, victim) },
		func() int64 { return countOf(t, c, key) })
}

// waitPromotion waits until a surviving node reports a new primary for the
// victim's slots, and returns when it saw that.
func waitPromotion(t *testing.T, c *redistest.Cluster, victim *redistest.Server) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			if n == victim || !n.Running() {
				continue
			}
			cl := goredis.NewClient(&goredis.Options{Addr: n.Addr, DisableIdentity: true})
			nodes, err := cl.ClusterNodes(context.Background()).Result()
			_ = cl.Close()
			if err == nil && promotedOver(nodes, victim.Addr) {
				return time.Now()
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no replica took over within 30 s")
	return time.Time{}
}

// promotedOver reports whether CLUSTER NODES shows the victim failed and a
// healthy primary serving slots other than before (its former replica).
func promotedOver(nodes, victimAddr string) bool {
	victimFailed, primaries := false, 0
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		if strings.HasPrefix(f[1], victimAddr+"@") {
			victimFailed = strings.Contains(f[2], "fail")
			continue
		}
		if strings.Contains(f[2], "master") && !strings.Contains(f[2], "fail") && len(f) > 8 {
			primaries++
		}
	}
	return victimFailed && primaries == 3
}

// countOf reads a fixed-window key's count from the cluster (0 when absent).
func countOf(t *testing.T, c *redistest.Cluster, key string) int64 {
	t.Helper()
	n, err := c.Client(t).HGet(context.Background(), key, "c").Int64()
	if err != nil && err != goredis.Nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return n
}

// sentinelChaos starts a Sentinel deployment and a limiter on it for the
// failover runs, and returns the user "chaos"'s key.
func sentinelChaos(t *testing.T) (*redistest.Sentinel, *limiter.Limiter, string) {
	t.Helper()
	d := redistest.StartSentinel(t)
	prefix := uniquePrefix(t)
	l := openLimiter(t, fmt.Sprintf(failoverConfig, prefix, fmt.Sprintf(
		`"redis_url":"redis://ignored.invalid:1/0","redis_mode":"sentinel","redis_sentinels":[%q,%q,%q],`+
			`"redis_sentinel_master":%q`,
		d.Sentinels[0].Addr, d.Sentinels[1].Addr, d.Sentinels[2].Addr, redistest.SentinelMaster)))
	return d, l, prefix + ":fw:user:1000000/3600:{chaos}"
}

// The Sentinel primary is killed (SIGKILL) under load: the sentinels promote
// a replica, requests fail meanwhile, and decisions resume within 2 s of the
// promotion.
func TestSentinelPrimaryKilledUnderLoad(t *testing.T) {
	chaosEnabled(t)
	d, l, key := sentinelChaos(t)
	failoverUnderLoad(t, "sentinel: kill -9 of the primary", l,
		func() time.Time {
			before := d.CurrentPrimary(t)
			d.Primary.Kill()
			d.WaitPrimaryChange(t, before)
			return time.Now()
		},
		func() int64 { return sentinelCount(t, d, key) })
}

// A manual CLUSTER FAILOVER on the replica of the user's primary under load:
// the replica takes over in agreement with its primary, so nothing is lost;
// decisions resume within 2 s of the promotion.
func TestClusterManualFailoverUnderLoad(t *testing.T) {
	chaosEnabled(t)
	c, victim, l, key := clusterChaos(t)
	failoverUnderLoad(t, "cluster: CLUSTER FAILOVER on the replica", l,
		func() time.Time {
			replica := c.ReplicaOf(t, victim)
			cl := goredis.NewClient(&goredis.Options{Addr: replica.Addr, DisableIdentity: true})
			defer func() { _ = cl.Close() }()
			if err := cl.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if c.PrimaryFor(t, "{chaos}") == replica {
					return time.Now()
				}
			}
			t.Fatal("the replica did not take over within 30 s")
			return time.Time{}
		},
		func() int64 { return countOf(t, c, key) })
}

// The user's Cluster primary stalls for 1 s (DEBUG SLEEP, shorter than the
// node timeout, so no failover): calls time out and the breaker opens
// (fail_mode applies); decisions resume within 2 s of the stall's end.
func TestClusterPrimaryStallsUnderLoad(t *testing.T) {
	chaosEnabled(t)
	c, victim, l, key := clusterChaos(t)
	failoverUnderLoad(t, "cluster: DEBUG SLEEP 1 on the primary", l,
		func() time.Time {
			cl := goredis.NewClient(&goredis.Options{Addr: victim.Addr, DisableIdentity: true, ReadTimeout: 5 * time.Second})
			defer func() { _ = cl.Close() }()
			if err := cl.Do(context.Background(), "DEBUG", "SLEEP", "1").Err(); err != nil {
				t.Fatal(err)
			}
			return time.Now() // the stall is over when DEBUG SLEEP replies
		},
		func() int64 { return countOf(t, c, key) })
}

// SENTINEL FAILOVER under load: the sentinels promote a replica and demote
// the primary; decisions resume within 2 s of the promotion.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	chaosEnabled(t)
	d, l, key := sentinelChaos(t)
	failoverUnderLoad(t, "sentinel: SENTINEL FAILOVER", l,
		func() time.Time { d.Failover(t); return time.Now() },
		func() int64 { return sentinelCount(t, d, key) })
}

// sentinelCount reads a fixed-window key's count from the current primary.
func sentinelCount(t *testing.T, d *redistest.Sentinel, key string) int64 {
	t.Helper()
	primary := goredis.NewClient(&goredis.Options{Addr: d.CurrentPrimary(t), DisableIdentity: true})
	defer func() { _ = primary.Close() }()
	n, err := primary.HGet(context.Background(), key, "c").Int64()
	if err != nil && err != goredis.Nil {
		t.Fatal(err)
	}
	return n
}
