package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelMaster is the name StartSentinel's sentinels monitor.
const SentinelMaster = "rlmaster"

// SentinelDownAfter is how long the sentinels wait for an unanswering primary
// before they agree it is down and fail over.
const SentinelDownAfter = time.Second

// Sentinel is a local Sentinel deployment: one primary, two replicas and
// three sentinels (quorum 2), all on loopback, stopped at the end of the test.
type Sentinel struct {
	Primary   *Server   // the primary at start; after a failover see CurrentPrimary
	Replicas  []*Server // its two replicas at start
	Sentinels []*Server
}

// StartSentinel starts the data nodes, then three `redis-server <conf>
// --sentinel` processes (Debian ships no redis-sentinel binary), and waits
// until every sentinel knows the primary and both replicas.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	d := &Sentinel{Primary: Start(t, "--enable-debug-command", "local", "--repl-diskless-sync-delay", "0")}
	for i := 0; i < 2; i++ {
		d.Replicas = append(d.Replicas, Start(t, "--enable-debug-command", "local",
			"--replicaof", "127.0.0.1", strconv.Itoa(d.Primary.Port)))
	}
	for _, r := range d.Replicas {
		waitSynced(t, r.Addr)
	}
	for i := 0; i < 3; i++ {
		d.Sentinels = append(d.Sentinels, startSentinelProcess(t, d.Primary.Port))
	}
	d.waitReady(t)
	return d
}

// startSentinelProcess starts one sentinel monitoring the primary on
// primaryPort. Sentinel rewrites its configuration file, so each has its own
// writable file in its own directory.
func startSentinelProcess(t testing.TB, primaryPort int) *Server {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s := &Server{bin: bin, dir: t.TempDir(), Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		conf := filepath.Join(s.dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 3000\n",
			port, s.dir, filepath.Join(s.dir, "redis.log"),
			SentinelMaster, primaryPort, SentinelMaster, SentinelDownAfter.Milliseconds(), SentinelMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("redistest: write sentinel.conf: %v", err)
		}
		s.args = []string{conf, "--sentinel"}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: start a sentinel: %v", lastErr)
	return nil
}

// SentinelAddrs returns the sentinels' "host:port" addresses.
func (d *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(d.Sentinels))
	for i, s := range d.Sentinels {
		addrs[i] = s.Addr
	}
	return addrs
}

// CurrentPrimary asks a running sentinel for the primary's address.
func (d *Sentinel) CurrentPrimary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range d.Sentinels {
		if !s.Running() {
			continue
		}
		sc := goredis.NewSentinelClient(&goredis.Options{Addr: s.Addr, DisableIdentity: true})
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		_ = sc.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1])
		}
	}
	t.Fatal("redistest: no running sentinel names a primary")
	return ""
}

// waitReady waits until every sentinel sees both replicas and the other two
// sentinels, so that a failover can reach its quorum.
func (d *Sentinel) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, "sentinels ready", d.health)
}

// health returns "" when every sentinel sees 2 replicas and 2 other
// sentinels, else what is missing.
func (d *Sentinel) health() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range d.Sentinels {
		sc := goredis.NewSentinelClient(&goredis.Options{Addr: s.Addr, DisableIdentity: true})
		replicas, err := sc.Replicas(ctx, SentinelMaster).Result()
		var peers []map[string]string
		if err == nil {
			peers, err = sc.Sentinels(ctx, SentinelMaster).Result()
		}
		_ = sc.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", s.Addr, err)
		}
		if len(replicas) != 2 || len(peers) != 2 {
			return fmt.Sprintf("%s sees %d replicas and %d other sentinels", s.Addr, len(replicas), len(peers))
		}
	}
	return ""
}

// failoverTimeout bounds how long a requested failover may take to promote a
// replica.
const failoverTimeout = 20 * time.Second

// Failover asks a sentinel for a failover (SENTINEL FAILOVER) and waits
// until the sentinels name a new primary and that node answers as primary.
func (d *Sentinel) Failover(t testing.TB) {
	t.Helper()
	before := d.CurrentPrimary(t)
	ctx, cancel := context.WithTimeout(context.Background(), failoverTimeout)
	defer cancel()
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: d.Sentinels[0].Addr, DisableIdentity: true})
	defer func() { _ = sc.Close() }()
	if err := sc.Failover(ctx, SentinelMaster).Err(); err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	d.WaitPrimaryChange(t, before)
}

// WaitPrimaryChange waits until the sentinels name a primary other than
// before and that node answers ROLE as primary.
func (d *Sentinel) WaitPrimaryChange(t testing.TB, before string) {
	t.Helper()
	deadline := time.Now().Add(failoverTimeout)
	for time.Now().Before(deadline) {
		if now := d.CurrentPrimary(t); now != before && isPrimary(now) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redistest: no new primary within %v", failoverTimeout)
}

// isPrimary reports whether the node at addr answers ROLE with "master".
func isPrimary(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
	defer func() { _ = c.Close() }()
	role, err := c.Do(ctx, "ROLE").Slice()
	return err == nil && len(role) > 0 && role[0] == "master"
}

// waitSynced waits until the replica at addr has synced with its primary.
func waitSynced(t testing.TB, addr string) {
	t.Helper()
	waitFor(t, "replica "+addr+" synced", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return replicaLinkDown(ctx, addr)
	})
}
