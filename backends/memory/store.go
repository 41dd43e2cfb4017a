// Package memory is the in-process backend of the Go engine: per-key state of
// the three algorithms in a concurrent map, bounded in size, evaluated
// all-or-nothing across a request's keys (docs/semantics.md §4, §10).
package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// ErrBadRequest marks an Evaluate call with malformed arguments.
var ErrBadRequest = errors.New("memory backend: bad request")

// Eviction tuning: how often and how many keys the incremental sweep looks at,
// and how many random keys compete when the store is full and nothing has
// expired.
const (
	sweepOneIn  = 8 // a call sweeps with probability 1/sweepOneIn ...
	sweepKeys   = 8 // ... and then examines this many keys: about one per call
	spaceScan   = 16
	spaceSample = 5
	presize     = 1024 // initial map capacity: small, since every plugin configuration has a store
)

// maxRequestKeys is the most keys one Evaluate takes: one per dimension
// (user, user_per_server, tenant, tool; core.MaxDimensions).
const maxRequestKeys = 4

// entry is one key's state. mu guards everything but pins and slot.
type entry struct {
	mu          sync.Mutex
	pins        atomic.Int32 // requests holding this entry between lookup and unlock
	dead        bool         // removed from the store: a request that locked it must look up again
	expiresAtUS int64        // Unix µs from which the state is empty (§3)
	slot        int          // index in Store.slots, guarded by Store.slotsMu
	key         string

	fw algorithms.FixedWindowState
	sw algorithms.SlidingWindowState
	tb algorithms.TokenBucketState
}

// Store is a bounded in-memory Backend. The zero value is not usable; call New
// or Shared. It is safe for concurrent use.
type Store struct {
	maxKeys int
	m       *xsync.MapOf[string, *entry]
	now     func() int64 // clock in Unix µs when a call passes nowUS 0

	slotsMu sync.Mutex
	slots   []*entry // every live entry, for sweeping and sampling
	cursor  int      // next slot the sweep examines
}

// New returns an empty store holding at most maxKeys keys (>= 1). A request
// that needs new keys while every key is in use by another request may exceed
// the bound by the keys of the requests in flight.
func New(maxKeys int) *Store {
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Store{
		maxKeys: maxKeys,
		m:       xsync.NewMapOf[string, *entry](xsync.WithPresize(min(maxKeys, presize))),
		now:     func() int64 { return time.Now().UnixMicro() },
	}
}

// Len returns the number of keys held.
func (s *Store) Len() int {
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	return len(s.slots)
}

// BorrowsKeys reports true: Evaluate copies any key it stores, so the caller
// may pass views of a buffer it reuses (core.KeyBorrower).
func (s *Store) BorrowsKeys() bool { return true }

// Close does nothing: memory state outlives limiter instances (§10).
func (s *Store) Close() error { return nil }

// Evaluate implements core.Backend for 1 to maxRequestKeys distinct keys. nowUS is the time
// in Unix µs, 0 for the wall clock. The request's keys are locked in key order
// for the whole check-then-consume, so no other request on them interleaves.
func (s *Store) Evaluate(_ context.Context, kind algorithms.Kind, keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (bool, error) {
	n := len(keys)
	if n < 1 || n > maxRequestKeys || len(limits) != n || len(out) < n {
		return false, fmt.Errorf("%w: %d keys, %d limits, %d outcomes", ErrBadRequest, n, len(limits), len(out))
	}
	if kind != algorithms.FixedWindow && kind != algorithms.SlidingWindow && kind != algorithms.TokenBucket {
		return false, fmt.Errorf("%w: algorithm %v", ErrBadRequest, kind)
	}
	for _, l := range limits[:n] {
		if l.Limit < 1 || l.WindowUS < 1 {
			return false, fmt.Errorf("%w: limit %d per %d µs", ErrBadRequest, l.Limit, l.WindowUS)
		}
	}
	if nowUS == 0 {
		nowUS = s.now()
	}
	if nowUS < 0 {
		return false, fmt.Errorf("%w: negative time", ErrBadRequest)
	}
	order := [maxRequestKeys]int{0, 1, 2, 3}
	for i := 1; i < n; i++ { // insertion sort of at most maxRequestKeys indices by key
		for j := i; j > 0 && keys[order[j]] < keys[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	for j := 1; j < n; j++ {
		if keys[order[j]] == keys[order[j-1]] {
			return false, fmt.Errorf("%w: duplicate key", ErrBadRequest)
		}
	}

	var es [maxRequestKeys]*entry
	for {
		for i := 0; i < n; i++ {
			es[i] = s.acquire(keys[i], nowUS)
		}
		dead := false
		for j := 0; j < n; j++ {
			e := es[order[j]]
			e.mu.Lock()
			dead = dead || e.dead
		}
		if !dead {
			break
		}
		// Evicted between lookup and lock (rare): start over.
		s.release(&es, &order, n)
	}

	var ok [maxRequestKeys]bool
	admitted := true
	for i := 0; i < n; i++ {
		ok[i] = es[i].check(kind, limits[i], nowUS)
		admitted = admitted && ok[i]
	}
	for i := 0; i < n; i++ {
		out[i] = es[i].finish(kind, limits[i], nowUS, ok[i], admitted)
	}
	s.release(&es, &order, n)

	if rand.Uint32N(sweepOneIn) == 0 { // #nosec G404 -- spreads sweeps over calls; predicting it tells only when expired keys get swept
		s.sweep(nowUS)
	}
	return admitted, nil
}

// release unlocks the request's entries in reverse lock order and unpins them.
func (s *Store) release(es *[maxRequestKeys]*entry, order *[maxRequestKeys]int, n int) {
	for j := n - 1; j >= 0; j-- {
		e := es[order[j]]
		e.mu.Unlock()
		e.pins.Add(-1)
	}
}

// acquire returns the live entry for key, creating it if needed, pinned so
// that eviction leaves it alone until release.
func (s *Store) acquire(key string, nowUS int64) *entry {
	if e, ok := s.m.Load(key); ok {
		e.pins.Add(1)
		return e
	}
	ne := &entry{key: strings.Clone(key)} // key may be a view of the caller's buffer
	ne.pins.Store(1)
	if e, loaded := s.m.LoadOrStore(ne.key, ne); loaded {
		e.pins.Add(1)
		return e
	}
	s.slotsMu.Lock()
	ne.slot = len(s.slots)
	s.slots = append(s.slots, ne)
	if len(s.slots) > s.maxKeys {
		s.makeRoom(nowUS)
	}
	s.slotsMu.Unlock()
	return ne
}

// check is the entry's algorithm Check; mu must be held.
func (e *entry) check(kind algorithms.Kind, l algorithms.Limit, nowUS int64) bool {
	switch kind {
	case algorithms.FixedWindow:
		return e.fw.Check(l, nowUS)
	case algorithms.SlidingWindow:
		return e.sw.Check(l, nowUS)
	default:
		return e.tb.Check(l, nowUS)
	}
}

// finish is the entry's algorithm Finish, recording when the state expires;
// mu must be held.
func (e *entry) finish(kind algorithms.Kind, l algorithms.Limit, nowUS int64, ok, admitted bool) algorithms.Outcome {
	var o algorithms.Outcome
	switch kind {
	case algorithms.FixedWindow:
		o = e.fw.Finish(l, nowUS, ok, admitted)
		e.expiresAtUS = e.fw.ExpiresAtUS(l)
	case algorithms.SlidingWindow:
		o = e.sw.Finish(l, nowUS, ok, admitted)
		e.expiresAtUS = e.sw.ExpiresAtUS(l)
	default:
		o = e.tb.Finish(l, nowUS, ok, admitted)
		e.expiresAtUS = e.tb.ExpiresAtUS(l)
	}
	return o
}

// sweep examines a few keys from a rotating cursor and drops the expired ones
// (§10: incremental, never a pass over every key). It skips the work if
// another call is sweeping or inserting.
func (s *Store) sweep(nowUS int64) {
	if !s.slotsMu.TryLock() {
		return
	}
	s.evictExpired(sweepKeys, nowUS, 0)
	s.slotsMu.Unlock()
}

// evictExpired examines up to n keys from the rotating cursor, dropping the
// expired ones, and stops early once at most keep keys remain (keep 0: never).
// slotsMu must be held.
func (s *Store) evictExpired(n int, nowUS int64, keep int) {
	for i := 0; i < n && len(s.slots) > keep; i++ {
		if s.cursor >= len(s.slots) {
			s.cursor = 0
		}
		if !s.tryEvict(s.slots[s.cursor], nowUS, true) {
			s.cursor++ // an eviction moves the last entry into this slot: look at it next
		}
	}
}

// makeRoom evicts until the store is within its bound: expired keys near the
// cursor first, else the soonest-expiring of a few random keys. Keys in use
// are skipped, so the bound may be exceeded by the keys of requests in
// flight. slotsMu must be held.
func (s *Store) makeRoom(nowUS int64) {
	s.evictExpired(spaceScan, nowUS, s.maxKeys)
	for attempt := 0; attempt < 4 && len(s.slots) > s.maxKeys; attempt++ {
		var victim *entry
		var victimExp int64
		for i := 0; i < spaceSample; i++ {
			e := s.slots[rand.IntN(len(s.slots))] // #nosec G404 -- samples eviction candidates for spread, not secrecy; a full store evicts either way
			if e.pins.Load() > 0 || !e.mu.TryLock() {
				continue
			}
			exp := e.expiresAtUS
			e.mu.Unlock()
			if victim == nil || exp < victimExp {
				victim, victimExp = e, exp
			}
		}
		if victim != nil {
			s.tryEvict(victim, nowUS, false)
		}
	}
}

// tryEvict removes e if it is not in use and, when onlyExpired, has expired
// at nowUS. It reports whether e was removed. slotsMu must be held.
func (s *Store) tryEvict(e *entry, nowUS int64, onlyExpired bool) bool {
	if e.pins.Load() > 0 || !e.mu.TryLock() {
		return false
	}
	defer e.mu.Unlock()
	if e.pins.Load() > 0 || (onlyExpired && e.expiresAtUS > nowUS) {
		return false
	}
	e.dead = true
	s.m.Delete(e.key)
	last := s.slots[len(s.slots)-1]
	s.slots[e.slot] = last
	last.slot = e.slot
	s.slots[len(s.slots)-1] = nil
	s.slots = s.slots[:len(s.slots)-1]
	return true
}
