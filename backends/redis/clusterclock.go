package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// clusterClock is the cluster clock of docs/semantics.md §11.1: Redis TIME of
// one primary, carried forward on the process's monotonic clock between
// samples, so that every slot group of a request and every gateway judge on
// one clock whatever the shards' own clocks say. Safe for concurrent use.
type clusterClock struct {
	sample  func(ctx context.Context) (int64, error) // the clock primary's TIME in Unix µs
	refresh time.Duration                            // age after which a new sample is taken
	timeout time.Duration                            // bound of one background sample

	mu        sync.Mutex // held while the first sample is taken, and to swap the state
	state     atomic.Pointer[clockSample]
	sampledNS atomic.Int64 // monoNow of the last sample taken, kept or not
	sampling  atomic.Bool  // a background sample is in flight
	lastUS    atomic.Int64 // the largest time handed out: the clock never goes back
	sampleErr atomic.Int64 // failed samples, for tests and diagnostics
}

// clockSample pairs a server time with the local monotonic instant it was
// estimated for, and the round trip that bounds its error (half of it).
type clockSample struct {
	at       time.Time     // local instant (with its monotonic reading)
	serverUS int64         // the server's Unix µs at that instant
	rtt      time.Duration // the sample's round trip
}

// agingPerRTT is how much a kept sample's round trip counts as grown per
// unit of its age: 1 ms per second, so that a sample with a shorter round
// trip is kept until a newer one is as good, allowing for drift (§11.1).
const agingPerRTT = 1000

// newClusterClock returns a clock that samples with sample at most once per
// refresh; a background sample is bounded by timeout.
func newClusterClock(sample func(ctx context.Context) (int64, error), refresh, timeout time.Duration) *clusterClock {
	return &clusterClock{sample: sample, refresh: refresh, timeout: timeout}
}

// take samples the server once. The server read its clock somewhere within
// the round trip: the middle is wrong by at most half of it. The new sample
// replaces the one in use only if its round trip is no longer than that
// one's, aged by agingPerRTT: a round trip stretched by a busy host (a
// delayed send or read) would otherwise shift the clock by up to half of it.
func (c *clusterClock) take(ctx context.Context) error {
	before := time.Now()
	us, err := c.sample(ctx)
	if err != nil {
		c.sampleErr.Add(1)
		return err
	}
	after := time.Now()
	c.sampledNS.Store(monoNow())
	rtt := after.Sub(before)
	if cur := c.state.Load(); cur != nil && rtt > cur.rtt+after.Sub(cur.at)/agingPerRTT {
		return nil
	}
	c.state.Store(&clockSample{at: before.Add(rtt / 2), serverUS: us, rtt: rtt})
	return nil
}

// NowUS returns the cluster clock in Unix µs. Only a caller that finds no
// sample at all waits for one (and gets its error); a stale sample is
// refreshed in the background while callers go on with it.
func (c *clusterClock) NowUS(ctx context.Context) (int64, error) {
	s := c.state.Load()
	if s == nil {
		c.mu.Lock()
		if s = c.state.Load(); s == nil {
			if err := c.take(ctx); err != nil {
				c.mu.Unlock()
				return 0, err
			}
			s = c.state.Load()
		}
		c.mu.Unlock()
	} else if monoNow()-c.sampledNS.Load() >= int64(c.refresh) && c.sampling.CompareAndSwap(false, true) {
		go func() { // #nosec G118 -- the refresh outlives the request that noticed the stale sample (its context ends when it returns); it has its own timeout
			defer c.sampling.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			_ = c.take(ctx) // a failed refresh keeps the old sample; the next caller tries again
		}()
	}
	now := s.serverUS + time.Since(s.at).Microseconds()
	for {
		last := c.lastUS.Load()
		if now <= last {
			return last, nil
		}
		if c.lastUS.CompareAndSwap(last, now) {
			return now, nil
		}
	}
}
