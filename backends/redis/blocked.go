package redis

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// driftDivisor allows for Redis's clock and the gateway's monotonic clock
// running at different rates: 1/1000 of a wait, well beyond NTP's 500 ppm
// (docs/semantics.md §12, "Which clock").
const driftDivisor = 1000

// blockedSweepEveryNS is how often a full cache may sweep its expired
// entries: a sweep walks every entry, so a cache full of live refusals must
// not pay one per new refusal.
const blockedSweepEveryNS = int64(time.Second)

// blockedEntry is one key's remembered refusal (§12), in Redis-clock µs and
// gateway-monotonic ns.
type blockedEntry struct {
	nowUS       int64 // the script's clock when it refused
	untilUS     int64 // blocked_until_us: nowUS + retry_after_us
	resetAtUS   int64 // the refusal's reset_at_us
	sentNS      int64 // monotonic instant the refused call was sent
	receivedNS  int64 // monotonic instant its reply arrived
	expiresAtNS int64 // sentNS + the wait less the drift allowance
}

// blockedCache remembers Redis's refusals per key so that a key known to be
// refused is answered without a Redis command (§12). It is safe for
// concurrent use. The zero value is not usable; see newBlockedCache.
type blockedCache struct {
	m         *xsync.MapOf[string, blockedEntry]
	maxKeys   int
	monoNS    func() int64 // monotonic clock in ns
	lastSweep atomic.Int64 // monoNS of the last sweep of a full cache
	local     atomic.Int64 // requests answered locally
}

// monoBase anchors monoNow: time.Since reads the monotonic clock.
var monoBase = time.Now()

// monoNow is the process's monotonic clock in ns since monoBase.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// newBlockedCache returns a cache of at most maxKeys keys, or nil when
// maxKeys is 0 (local refusals off). monoNS nil means monoNow.
func newBlockedCache(maxKeys int, monoNS func() int64) *blockedCache {
	if maxKeys <= 0 {
		return nil
	}
	if monoNS == nil {
		monoNS = monoNow
	}
	return &blockedCache{m: xsync.NewMapOf[string, blockedEntry](), maxKeys: maxKeys, monoNS: monoNS}
}

// answer refuses a request locally when one of its keys is remembered as
// blocked at nowUS (0: production, judged on the monotonic clock): it fills
// out[:len(keys)] as §12 says and returns true. It returns false, writing
// nothing, when Redis must be asked.
func (c *blockedCache) answer(keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool {
	var t int64 // the monotonic clock, read once and only if a key is remembered
	found := false
	for i, k := range keys {
		e, ok := c.m.Load(k)
		if !ok {
			continue
		}
		if nowUS == 0 && t == 0 {
			t = c.monoNS()
		}
		retry, blocked := e.wait(nowUS, t)
		if !blocked {
			if nowUS == 0 {
				// Expired for good (the monotonic clock never goes back). A fresh
				// entry stored since the Load may go too: one more Redis call, no harm.
				c.m.Delete(k)
			}
			continue
		}
		if !found {
			for j := range keys {
				// Not consulted (§12): admitted-looking, so never the reported one.
				out[j] = algorithms.Outcome{OK: true, Remaining: limits[j].Limit}
			}
			found = true
		}
		out[i] = algorithms.Outcome{ResetAtUS: e.resetAtUS, RetryAfterUS: retry}
	}
	if found {
		c.local.Add(1)
	}
	return found
}

// wait reports whether e still blocks at nowUS (explicit Redis-clock µs) or,
// when nowUS is 0, at monotonic instant t, and the retry_after_us to announce.
func (e blockedEntry) wait(nowUS, t int64) (int64, bool) {
	if nowUS != 0 {
		if nowUS < e.nowUS || nowUS >= e.untilUS {
			return 0, false
		}
		return e.untilUS - nowUS, true
	}
	if t >= e.expiresAtNS {
		return 0, false
	}
	sinceReplyUS := (t - e.receivedNS) / 1000
	retry := e.untilUS - e.nowUS - sinceReplyUS + sinceReplyUS/driftDivisor
	if retry < 1 {
		retry = 1
	}
	return retry, true
}

// record remembers the keys that refused a blocked request (§12): out holds
// the script's outcomes, replyNowUS its clock, sentNS and receivedNS when the
// call went out and its reply came back. Keys that admitted are forgotten.
func (c *blockedCache) record(keys []string, admitted bool, out []algorithms.Outcome, replyNowUS, sentNS, receivedNS int64) {
	for i, k := range keys {
		o := out[i]
		if admitted || o.OK {
			continue // nothing to remember; a stale entry of k expires or is swept
		}
		waitUS := o.RetryAfterUS
		e := blockedEntry{
			nowUS:       replyNowUS,
			untilUS:     replyNowUS + waitUS,
			resetAtUS:   o.ResetAtUS,
			sentNS:      sentNS,
			receivedNS:  receivedNS,
			expiresAtNS: sentNS + (waitUS-waitUS/driftDivisor)*1000,
		}
		if _, ok := c.m.Load(k); !ok && c.m.Size() >= c.maxKeys && !c.sweep(receivedNS) {
			continue // full of live refusals: this one goes to Redis, as without the cache
		}
		c.m.Store(strings.Clone(k), e) // k may be a view of a reused buffer (BorrowsKeys)
	}
}

// sweep drops expired entries of a full cache, at most once per
// blockedSweepEveryNS, and reports whether there is room now.
func (c *blockedCache) sweep(t int64) bool {
	last := c.lastSweep.Load()
	if t-last < blockedSweepEveryNS || !c.lastSweep.CompareAndSwap(last, t) {
		return false
	}
	c.m.Range(func(k string, e blockedEntry) bool {
		if t >= e.expiresAtNS {
			c.m.Delete(k)
		}
		return true
	})
	return c.m.Size() < c.maxKeys
}

// LocalRefusals returns how many requests the backend refused from its
// remembered refusals, without a Redis command (docs/semantics.md §12).
func (b *Backend) LocalRefusals() int64 {
	if b.blocked == nil {
		return 0
	}
	return b.blocked.local.Load()
}
