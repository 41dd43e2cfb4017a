package tests_go

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// The local Cluster serves every slot, and a multi-key script whose keys are
// in different slots is refused with CROSSSLOT (the fault §6's hash tags
// avoid), while keys sharing a hash tag run in one script.
func TestLocalClusterRefusesCrossSlotScripts(t *testing.T) {
	c := redistest.StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := c.Client(t)
	const script = "return #KEYS"
	untagged := []string{"rl:fw:user:10/60:alice", "rl:fw:tenant:10/60:team1"}
	if cl.ClusterKeySlot(ctx, untagged[0]).Val() == cl.ClusterKeySlot(ctx, untagged[1]).Val() {
		t.Fatal("test keys chosen badly: both in one slot")
	}
	node, err := cl.MasterForKey(ctx, untagged[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Eval(ctx, script, untagged).Result()
	if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("EVAL over two slots: err=%v, want CROSSSLOT", err)
	}
	tagged := []string{"rl:fw:user:10/60:{alice}", "rl:fw:user_per_server:10/60:{alice}:srv1"}
	n, err := cl.Eval(ctx, script, tagged).Int()
	if err != nil || n != 2 {
		t.Fatalf("EVAL over one hash tag: %d, %v", n, err)
	}
}

// The local Sentinel deployment names its primary and fails over to a
// replica when asked to.
func TestLocalSentinelFailsOver(t *testing.T) {
	d := redistest.StartSentinel(t)
	if got := d.CurrentPrimary(t); got != d.Primary.Addr {
		t.Fatalf("sentinels name %s as primary, want %s", got, d.Primary.Addr)
	}
	d.Failover(t)
	if got := d.CurrentPrimary(t); got == d.Primary.Addr {
		t.Fatalf("primary still %s after a failover", got)
	}
}
