package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of StartCluster's nodes: a
// primary that does not answer for this long is failed over to its replica.
const ClusterNodeTimeout = 2 * time.Second

// clusterReadyTimeout bounds how long a new cluster may take to agree on its
// slots and replicas.
const clusterReadyTimeout = 30 * time.Second

// Cluster is a local Redis Cluster: 3 primaries, each with one replica, all
// on loopback, stopped at the end of the test.
type Cluster struct {
	Nodes []*Server // all six nodes, in start order
}

// StartCluster starts six cluster-enabled redis-servers (DEBUG allowed from
// loopback), joins them with `redis-cli --cluster create --cluster-replicas
// 1`, and waits until every slot is served and every replica is attached.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := cliBinary(t)
	c := &Cluster{}
	addrs := make([]string, 0, 6)
	for i := 0; i < 6; i++ {
		s := startOn(t, freeClusterPort,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)),
			"--enable-debug-command", "local",
			// Sync replicas at once (Redis 7 waits 5 s for more replicas
			// before a diskless sync): a replica that never synced does not
			// take over from a dead primary.
			"--repl-diskless-sync-delay", "0")
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput() // #nosec G204 -- test helper: redis-cli found by cliBinary, loopback addresses of servers this package started
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t)
	return c
}

// freeClusterPort returns a port P such that P and P+10000 (the node's
// cluster bus) were both free a moment ago. Redis refuses a cluster port above
// 55535; below 22768 both stay under Linux's default ephemeral range, where
// client sockets would otherwise take them.
func freeClusterPort() (int, error) {
	for attempt := 0; attempt < 200; attempt++ {
		port := 12000 + rand.IntN(10000) // #nosec G404 -- a test port, not a secret
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair for a cluster node")
}

// cliBinary returns redis-cli from beside redis-server or from PATH.
func cliBinary(t testing.TB) string {
	t.Helper()
	candidates := []string{filepath.Join(filepath.Dir(Binary(t)), "redis-cli")}
	if p, err := exec.LookPath("redis-cli"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return c
		}
	}
	msg := "redis-cli not found (it comes with redis-server)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true forbids skipping")
	}
	t.Skip(msg)
	return ""
}

// SeedURL returns a redis:// URL of one node, as an operator would configure.
func (c *Cluster) SeedURL() string { return c.Nodes[0].URL() }

// Client returns a go-redis cluster client for inspecting the cluster,
// closed at the end of the test.
func (c *Cluster) Client(t testing.TB) *goredis.ClusterClient {
	t.Helper()
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, DisableIdentity: true})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// sees 3 primaries serving all 16384 slots, each with a replica attached.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	waitFor(t, "cluster healthy", c.health)
}

// waitFor polls probe (it returns "" when ready, else what is missing)
// until it is ready, or fails the test after clusterReadyTimeout.
func waitFor(t testing.TB, what string, probe func() string) {
	t.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	var last string
	for time.Now().Before(deadline) {
		if last = probe(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redistest: not %s within %v: %s", what, clusterReadyTimeout, last)
}

// health returns "" when the cluster is healthy, else what is missing.
func (c *Cluster) health() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := goredis.NewClient(&goredis.Options{Addr: n.Addr, DisableIdentity: true})
		info, err := cl.ClusterInfo(ctx).Result()
		var nodes string
		if err == nil {
			nodes, err = cl.ClusterNodes(ctx).Result()
		}
		_ = cl.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + ": cluster_state not ok"
		}
		if p, r := countRoles(nodes); p != 3 || r != 3 {
			return fmt.Sprintf("%s sees %d serving primaries and %d attached replicas", n.Addr, p, r)
		}
		if msg := replicaLinkDown(ctx, n.Addr); msg != "" {
			return msg
		}
	}
	return ""
}

// replicaLinkDown returns "" unless the node at addr is a replica whose
// replication link to its primary is not up yet (it has not synced).
func replicaLinkDown(ctx context.Context, addr string) string {
	cl := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
	defer func() { _ = cl.Close() }()
	info, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Sprintf("%s: %v", addr, err)
	}
	if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
		return addr + ": replica not synced yet"
	}
	return ""
}

// countRoles counts, in CLUSTER NODES output, the healthy primaries that
// serve slots and the healthy replicas attached to a primary.
func countRoles(nodes string) (primaries, replicas int) {
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || strings.Contains(f[2], "fail") || f[7] != "connected" {
			continue
		}
		switch {
		case strings.Contains(f[2], "master") && len(f) > 8:
			primaries++
		case strings.Contains(f[2], "slave") && f[3] != "-":
			replicas++
		}
	}
	return primaries, replicas
}

// PrimaryFor returns the running node that serves key's slot as primary.
func (c *Cluster) PrimaryFor(t testing.TB, key string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cl := c.Client(t)
	node, err := cl.MasterForKey(ctx, key)
	if err != nil {
		t.Fatalf("redistest: primary for a key: %v", err)
	}
	addr := node.Options().Addr
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("redistest: primary %s is not a node of this cluster", addr)
	return nil
}

// Running reports whether the server process is up (not stopped or killed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// MigrateSlot moves the hash slot of key to the primary to, the way
// `redis-cli --cluster reshard` moves a slot: IMPORTING and MIGRATING, the
// keys with MIGRATE (pausing pause before and after, so that clients meet
// the ASK window), then the new owner announced to every primary.
func (c *Cluster) MigrateSlot(t testing.TB, key string, to *Server, pause time.Duration) {
	t.Helper()
	ctx := context.Background()
	from := c.PrimaryFor(t, key)
	if from == to {
		t.Fatal("redistest: the slot is already on that primary")
	}
	src := goredis.NewClient(&goredis.Options{Addr: from.Addr, DisableIdentity: true})
	dst := goredis.NewClient(&goredis.Options{Addr: to.Addr, DisableIdentity: true})
	defer func() { _, _ = src.Close(), dst.Close() }()
	slot, err := src.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	srcID, err1 := src.ClusterMyID(ctx).Result()
	dstID, err2 := dst.ClusterMyID(ctx).Result()
	if err1 != nil || err2 != nil {
		t.Fatalf("redistest: CLUSTER MYID: %v %v", err1, err2)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("redistest: migrate slot %d: %v", slot, err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())
	time.Sleep(pause)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to.Port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
	}
	time.Sleep(pause)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := goredis.NewClient(&goredis.Options{Addr: n.Addr, DisableIdentity: true})
		role, _ := cl.Do(ctx, "ROLE").Slice()
		if len(role) > 0 && role[0] == "master" {
			must(cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
		}
		_ = cl.Close()
	}
}

// ReplicaOf returns the running replica of the primary p.
func (c *Cluster) ReplicaOf(t testing.TB, p *Server) *Server {
	t.Helper()
	ctx := context.Background()
	pc := goredis.NewClient(&goredis.Options{Addr: p.Addr, DisableIdentity: true})
	id, err := pc.ClusterMyID(ctx).Result()
	_ = pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if n == p || !n.Running() {
			continue
		}
		cl := goredis.NewClient(&goredis.Options{Addr: n.Addr, DisableIdentity: true})
		role, err := cl.Do(ctx, "ROLE").Slice()
		myself := ""
		if err == nil && len(role) > 1 && role[0] == "slave" {
			nodes, _ := cl.ClusterNodes(ctx).Result()
			for _, line := range strings.Split(nodes, "\n") {
				if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[2], "myself") {
					myself = f[3]
				}
			}
		}
		_ = cl.Close()
		if myself == id {
			return n
		}
	}
	t.Fatalf("redistest: no running replica of %s", p.Addr)
	return nil
}
