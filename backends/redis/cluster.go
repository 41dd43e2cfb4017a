package redis

import (
	"context"
	"fmt"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// initCluster sets up the §11.1 machinery of a ModeCluster backend: the
// give-back script and the cluster clock.
func (b *Backend) initCluster(cc *goredis.ClusterClient, opts Options) error {
	gb, err := loadGiveBack(opts.Algorithm)
	if err != nil {
		return fmt.Errorf("redis backend: %w", err)
	}
	b.cluster, b.giveBack, b.giveBackArg = cc, gb, gb.sha
	clockKey := opts.ClusterClockKey
	b.clock = newClusterClock(func(ctx context.Context) (int64, error) {
		node, err := cc.MasterForKey(ctx, clockKey)
		if err != nil {
			return 0, err
		}
		t, err := node.Time(ctx).Result()
		if err != nil {
			return 0, err
		}
		return t.UnixMicro(), nil
	}, clusterClockRefresh, b.callTimeout)
	return nil
}

// GiveBacksLost returns how many Cluster give-back calls failed since the
// backend was made: each holds one unit of its keys until their state
// recovers by itself (docs/semantics.md §11.1, Bounds). 0 outside ModeCluster.
func (b *Backend) GiveBacksLost() int64 { return b.giveBacksLost.Load() }

// group is one slot group of a Cluster request: its keys, their positions
// in the request, and its outcome.
type group struct {
	n        int
	idx      [maxKeys]int
	keys     [maxKeys]string
	limits   [maxKeys]algorithms.Limit
	out      [maxKeys]algorithms.Outcome
	admitted bool
	err      error
}

// callCluster is Evaluate's network part on a Cluster (§11.1): the cluster
// clock, then one script per slot group, in parallel, and a give-back of the
// groups that admitted when another refused or failed.
func (b *Backend) callCluster(ctx context.Context, keys []string, limits []algorithms.Limit,
	nowUS int64, out []algorithms.Outcome) (bool, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.callTimeout)
	defer cancel()
	if nowUS == 0 {
		var err error
		if nowUS, err = b.clock.NowUS(ctx); err != nil {
			return false, 0, sanitize("cluster clock", err)
		}
	}
	var of [maxKeys]int
	n := slotGroups(keys, of[:len(keys)])
	if n == 1 {
		return b.evalCheck(ctx, keys, limits, nowUS, out)
	}
	var groups [maxKeys]group
	for i := range keys {
		g := &groups[of[i]]
		g.idx[g.n], g.keys[g.n], g.limits[g.n] = i, keys[i], limits[i]
		g.n++
	}
	b.each(groups[:n], func(g *group) {
		g.admitted, _, g.err = b.evalCheck(ctx, g.keys[:g.n], g.limits[:g.n], nowUS, g.out[:g.n])
	})
	admitted := true
	var firstErr error
	for g := range groups[:n] {
		if groups[g].err != nil && firstErr == nil {
			firstErr = groups[g].err
		}
		admitted = admitted && groups[g].err == nil && groups[g].admitted
	}
	if !admitted {
		b.giveBackAdmitted(groups[:n], nowUS)
	}
	if firstErr != nil {
		return false, 0, firstErr
	}
	for g := range groups[:n] {
		for j := 0; j < groups[g].n; j++ {
			out[groups[g].idx[j]] = groups[g].out[j]
		}
	}
	return admitted, nowUS, nil
}

// each runs f on every group, the first in this goroutine and the others in
// their own, and waits for all.
func (b *Backend) each(groups []group, f func(*group)) {
	var wg sync.WaitGroup
	for g := 1; g < len(groups); g++ {
		wg.Add(1)
		go func(g *group) {
			defer wg.Done()
			f(g)
		}(&groups[g])
	}
	f(&groups[0])
	wg.Wait()
}

// giveBackAdmitted undoes, at nowUS, the consumption of every group that
// admitted (§11.1). It has its own deadline: the request's may be spent.
// A failed give-back is counted, not retried: it may have run.
func (b *Backend) giveBackAdmitted(groups []group, nowUS int64) {
	ctx, cancel := context.WithTimeout(context.Background(), b.callTimeout)
	defer cancel()
	var pending [maxKeys]group
	n := 0
	for g := range groups {
		if groups[g].err == nil && groups[g].admitted {
			pending[n] = groups[g]
			n++
		}
	}
	if n == 0 {
		return
	}
	b.each(pending[:n], func(g *group) {
		if err := b.evalGiveBack(ctx, g.keys[:g.n], g.limits[:g.n], nowUS); err != nil {
			b.giveBacksLost.Add(1)
		}
	})
}

// evalGiveBack runs the give-back script for keys (reloading it once on
// NOSCRIPT) and checks its reply: how many keys it gave back, 0..len(keys).
func (b *Backend) evalGiveBack(ctx context.Context, keys []string, limits []algorithms.Limit, nowUS int64) error {
	buf := argPool.Get().(*argBuf)
	defer func() {
		buf.reset()
		argPool.Put(buf)
	}()
	args := buf.fill(b.giveBackArg, keys, limits, nowUS)
	cmd := goredis.NewIntCmd(ctx, args...)
	err := b.client.Process(ctx, onceIntCmd{cmd})
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := b.reload(ctx, b.giveBack); err != nil {
			return err
		}
		cmd = goredis.NewIntCmd(ctx, args...)
		err = b.client.Process(ctx, onceIntCmd{cmd})
	}
	if err != nil {
		return sanitize("give-back", err)
	}
	if v := cmd.Val(); v < 0 || v > int64(len(keys)) {
		return &backendError{op: "give-back", kind: "malformed reply"}
	}
	return nil
}
