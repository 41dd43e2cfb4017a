// Package memory is the in-process backend of the Go engine: per-key state of
// one algorithm in a concurrent map, bounded in size, evaluated all-or-nothing
// across a request's keys (docs/semantics.md §4, §10).
package memory

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
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
	sweepOneIn  = 8 // a call sweeps with probability 1/sweepOneIn (a power of 2) ...
	sweepKeys   = 8 // ... and then examines this many keys: about one per call
	spaceScan   = 16
	spaceSample = 5
	presize     = 1024 // initial map capacity: small, since every plugin configuration has a store
	// emptySlots is how many prefix ids (from 0) keep the entry of their
	// empty segment in a slot of their own: a key that is a whole prefix,
	// such as a configured tool's, is one of the hottest of a store, and
	// its slot costs one atomic load, without the hash and the key compare
	// of the cache below.
	emptySlots = 64
	// cacheBits sets the size of the recent-entry cache: 1<<cacheBits
	// slots of 16 bytes, 16 KiB per store. A hot key is found there with
	// its hash, one compare of the slot's hash and one of the key, where
	// the map costs a probe of a bucket and a call. Direct-mapped, so two
	// hot keys on one slot take turns; with 1,024 slots a working set of
	// 100 hot keys (users, tenants, tools of a busy gateway) loses about a
	// tenth of them to such conflicts, where 256 slots would lose about a
	// third; a bigger cache would cost memory in every store and misses in
	// the CPU's caches for little more.
	cacheBits  = 10
	cacheSlots = 1 << cacheBits
	// fillOneIn: an entry goes to the cache at its first lookup in the map
	// and then at every fillOneIn-th (a power of 2). With many keys nearly
	// every lookup misses the cache, and a fill is two atomic stores (full
	// barriers on amd64) to a line of the cache; a hot key that lost its slot
	// to another comes back after at most fillOneIn lookups.
	fillOneIn = 4
	// expirySlackShift sets how far a stored expiry may run ahead of the
	// state's (noteExpiry): windowUS>>expirySlackShift to twice that.
	expirySlackShift = 4
)

// maxRequestKeys is the most keys one Evaluate takes: one per dimension
// (user, user_per_server, tenant, tool; core.MaxDimensions).
const maxRequestKeys = 4

// wholeKeys is the prefix ids of Evaluate's keys: 0 for each. Never
// written: a local array would escape through the evaluator interface (an
// allocation per call), and a nil slice would cost evaluate a test per key.
var wholeKeys [maxRequestKeys]uint32

// statePtr is the pointer to an algorithm's state type S, which implements
// algorithms.State.
type statePtr[S any] interface {
	*S
	algorithms.State
}

// keyID identifies one key in the store: the id of its prefix (KeySpace; 0
// for a whole key given to Evaluate) and the rest, the segment. Holding the
// two apart lets the engine skip composing key strings, and keeps entries
// small: the prefix is stored once per store.
type keyID struct {
	space uint32
	seg   string
}

// memKey is the map's key: a keyID and its hash under the store's keyHash
// (typedStore.key), computed once per request key, since the cache and the
// map both use it. Being a function of the keyID, the hash does not change
// which keys are equal. Entries hold the keyID alone (8 bytes less, which
// keeps the fixed window's entry in the 80-byte size class): eviction, the
// one user of an entry's hash, computes it again.
type memKey struct {
	hash uint64
	keyID
}

// entry is one key's state of the store's algorithm. mu guards everything but
// pins, expiresAtUS, slot and the immutable id and key.
type entry[S any] struct {
	mu    sync.Mutex
	pins  atomic.Int32 // requests protecting this entry from eviction between lookup and unlock
	dead  bool         // removed from the store: a request that locked it must look up again
	calls uint8        // requests that locked it first among their keys, mod 256: picks the calls that sweep
	finds uint8        // lookups of it in the map, mod 256: picks the ones that fill the cache
	// expiresAtUS is a Unix µs from which the state is empty (§3): not
	// before the state's own expiry, and at most an eighth of its window
	// after it (noteExpiry). Written under mu; atomic so that the sweep can
	// pass over live entries without taking their locks.
	expiresAtUS atomic.Int64
	slot        int    // index in Store.slots, guarded by Store.slotsMu
	id          uint64 // unique in the store: requests lock their entries in id order
	key         keyID
	state       S
}

// Store is a bounded in-memory Backend for one algorithm, fixed when it is
// made. The zero value is not usable; call New. It is safe for concurrent use.
type Store struct {
	kind algorithms.Kind
	impl evaluator
	now  func() int64 // clock in Unix µs when a call passes nowUS 0

	spacesMu sync.Mutex
	spaces   map[string]uint32 // key prefix -> its id (KeySpace), from 1
}

// evaluator is a typedStore of one state type.
type evaluator interface {
	// evaluate takes the keys as prefix ids and segments, as many of each.
	evaluate(spaces []uint32, segs []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool
	len() int
}

// typedStore holds the entries of one algorithm, whose state type is S.
type typedStore[S any, P statePtr[S]] struct {
	maxKeys int
	m       *xsync.MapOf[memKey, *entry[S]]
	lastID  atomic.Uint64

	h keyHash

	slotsMu sync.Mutex
	slots   []*entry[S] // every live entry, for sweeping and sampling
	cursor  int         // next slot the sweep examines

	// empty[id] is nil or the entry of the key (id, ""), and cache holds
	// the recently looked-up entries of the other keys, each in the slot of
	// its key's hash (cacheIndex). Both are caches of the map whose entries
	// may be dead: evaluate checks them like any looked-up entry (dead
	// under its lock), so a stale one costs a retry, never a wrong answer.
	// Slots are filled under the entry's lock while it is live, and
	// eviction clears an entry's slot under that lock, so no slot holds an
	// entry once its eviction is done (a request that read it just before
	// finds it dead), and the slots keep no evicted entry from the
	// collector.
	empty [emptySlots]atomic.Pointer[entry[S]]
	cache [cacheSlots]cacheSlot[S]
}

// noteExpiry records exp, the state's expiry after a request under a
// window of windowUS µs. The stored expiry may run ahead of the state's by up
// to 2*windowUS>>expirySlackShift, so that it is written about once per
// windowUS>>expirySlackShift µs of a busy key, not on every request: an
// atomic store is a full barrier (XCHG on amd64), and a sliding window's or
// token bucket's expiry moves with every admission. An entry is so evicted
// at most an eighth of its window after it could be; what it answers is
// unchanged, since expired state counts as empty (§3). Never behind the
// state: a live entry is never evicted. mu must be held, so the value
// loaded is the last one written.
func (e *entry[S]) noteExpiry(exp, windowUS int64) {
	slack := windowUS >> expirySlackShift
	if stored := e.expiresAtUS.Load(); stored < exp || stored-exp > 2*slack {
		e.expiresAtUS.Store(exp + slack)
	}
}

// cacheSlot is one slot of typedStore.cache: an entry and its key's hash.
// The hash lets a lookup pass over another key's entry without reading it
// (with many keys, most slots hold another key, and the entry is a miss of
// the CPU's cache). The two are written apart, so a reader may see the hash
// of one entry with another: the key compare that follows catches it.
type cacheSlot[S any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[S]]
}

// cacheIndex is the slot of a key's hash: its top bits, apart from the low
// bits the map indexes its buckets with (not that it matters: the hash is
// uniform in every bit).
func cacheIndex(hash uint64) uint64 { return hash >> (64 - cacheBits) }

// New returns an empty store of algorithm kind holding at most maxKeys keys
// (>= 1). A request that needs new keys while every key is in use by another
// request may exceed the bound by the keys of the requests in flight.
func New(kind algorithms.Kind, maxKeys int) (*Store, error) {
	if maxKeys < 1 {
		return nil, fmt.Errorf("memory backend: maxKeys %d, want at least 1", maxKeys)
	}
	s := &Store{kind: kind, now: func() int64 { return time.Now().UnixMicro() }, spaces: map[string]uint32{}}
	switch kind {
	case algorithms.FixedWindow:
		s.impl = newTyped[algorithms.FixedWindowState](maxKeys)
	case algorithms.SlidingWindow:
		s.impl = newTyped[algorithms.SlidingWindowState](maxKeys)
	case algorithms.TokenBucket:
		s.impl = newTyped[algorithms.TokenBucketState](maxKeys)
	default:
		return nil, fmt.Errorf("memory backend: unknown algorithm %v", kind)
	}
	return s, nil
}

func newTyped[S any, P statePtr[S]](maxKeys int) *typedStore[S, P] {
	return &typedStore[S, P]{
		maxKeys: maxKeys,
		m:       xsync.NewMapOfWithHasher[memKey, *entry[S]](mapHash, xsync.WithPresize(min(maxKeys, presize))),
		h:       newKeyHash(),
	}
}

// key returns the key of a prefix id and segment, with its hash.
func (s *typedStore[S, P]) key(space uint32, seg string) memKey {
	k := memKey{keyID: keyID{space: space, seg: seg}}
	k.hash = s.h.sum(k.keyID)
	return k
}

// isWhole reports whether key has a slot in empty (a whole prefix).
func isWhole(key keyID) bool { return key.seg == "" && key.space < emptySlots }

// cached returns the cache's entry for key (not a whole prefix), possibly
// dead, or nil.
func (s *typedStore[S, P]) cached(key memKey) *entry[S] {
	c := &s.cache[cacheIndex(key.hash)]
	if c.hash.Load() != key.hash {
		return nil
	}
	// The slot's hash may belong to another entry (written apart): the
	// prefix id and the segment decide; the hash follows from them.
	if e := c.e.Load(); e != nil && e.key.space == key.space && e.key.seg == key.seg {
		return e
	}
	return nil
}

// Algorithm returns the algorithm the store evaluates (core.Backend).
func (s *Store) Algorithm() algorithms.Kind { return s.kind }

// Len returns the number of keys held.
func (s *Store) Len() int { return s.impl.len() }

func (s *typedStore[S, P]) len() int {
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
// in Unix µs, 0 for the wall clock. The request's entries are locked in id order
// for the whole check-then-consume, so no other request on them interleaves.
// A key given here is held apart from the keys of EvaluateSegments: it has
// prefix id 0.
func (s *Store) Evaluate(_ context.Context, keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (bool, error) {
	n := len(keys)
	nowUS, err := s.checkRequest(n, limits, nowUS, out)
	if err != nil {
		return false, err
	}
	for i := 1; i < n; i++ {
		for j := 0; j < i; j++ {
			if keys[i] == keys[j] {
				return false, fmt.Errorf("%w: duplicate key", ErrBadRequest)
			}
		}
	}
	return s.impl.evaluate(wholeKeys[:n], keys, limits, nowUS, out), nil
}

// KeySpace returns the id of a key prefix (core.SegmentedBackend): the same
// id for an equal prefix for the store's lifetime, from 1. The engine asks
// once per dimension and configured tool, when it binds a configuration.
func (s *Store) KeySpace(prefix string) uint32 {
	s.spacesMu.Lock()
	defer s.spacesMu.Unlock()
	id, ok := s.spaces[prefix]
	if !ok {
		id = uint32(len(s.spaces) + 1) // #nosec G115 -- one id per distinct prefix of this store's configurations: a handful
		s.spaces[prefix] = id
	}
	return id
}

// EvaluateSegments is Evaluate of the keys given as the id of their prefix
// (KeySpace) and their segment (core.SegmentedBackend); the segments may be
// views of a buffer the caller reuses.
func (s *Store) EvaluateSegments(_ context.Context, spaces []uint32, segments []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (bool, error) {
	// The checks of segmentsError, inline and without building an error
	// (cheaper than calling it on every request): any failure
	// goes to segmentsError, which finds it again in its order and words it.
	n := len(segments)
	if n < 1 || n > maxRequestKeys || len(limits) != n || len(out) < n || len(spaces) != n || nowUS < 0 {
		return false, s.segmentsError(spaces, segments, limits, nowUS, out)
	}
	spaces, limits = spaces[:n], limits[:n]
	for i := range limits {
		if min(limits[i].Limit, limits[i].WindowUS) < 1 {
			return false, s.segmentsError(spaces, segments, limits, nowUS, out)
		}
	}
	for i := 1; i < n; i++ {
		for j := 0; j < i; j++ {
			if spaces[i] == spaces[j] && segments[i] == segments[j] {
				return false, s.segmentsError(spaces, segments, limits, nowUS, out)
			}
		}
	}
	if nowUS == 0 {
		if nowUS = s.now(); nowUS < 0 {
			return false, s.segmentsError(spaces, segments, limits, nowUS, out)
		}
	}
	return s.impl.evaluate(spaces, segments, limits, nowUS, out), nil
}

// segmentsError returns the error of a bad EvaluateSegments call, nil if
// there is none: a bad size, limit or time (checkRequest), then a prefix
// id count unlike the segments', then a duplicate key.
func (s *Store) segmentsError(spaces []uint32, segments []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) error {
	n := len(segments)
	if _, err := s.checkRequest(n, limits, nowUS, out); err != nil {
		return err
	}
	if len(spaces) != n {
		return fmt.Errorf("%w: %d prefix ids for %d segments", ErrBadRequest, len(spaces), n)
	}
	for i := 1; i < n; i++ {
		for j := 0; j < i; j++ {
			if spaces[i] == spaces[j] && segments[i] == segments[j] {
				return fmt.Errorf("%w: duplicate key", ErrBadRequest)
			}
		}
	}
	return nil
}

// checkRequest validates the sizes, limits and time of a request of n keys
// and returns its time (the store's clock for nowUS 0).
func (s *Store) checkRequest(n int, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (int64, error) {
	if n < 1 || n > maxRequestKeys || len(limits) != n || len(out) < n {
		return 0, fmt.Errorf("%w: %d keys, %d limits, %d outcomes", ErrBadRequest, n, len(limits), len(out))
	}
	for _, l := range limits[:n] {
		if l.Limit < 1 || l.WindowUS < 1 {
			return 0, fmt.Errorf("%w: limit %d per %d µs", ErrBadRequest, l.Limit, l.WindowUS)
		}
	}
	if nowUS == 0 {
		nowUS = s.now()
	}
	if nowUS < 0 {
		return 0, fmt.Errorf("%w: negative time", ErrBadRequest)
	}
	return nowUS, nil
}

// evaluate is Evaluate on validated arguments.
//
// The first attempt looks its existing entries up without pinning them: a
// hot key then costs no atomic operation besides its lock. An entry evicted
// between lookup and lock is found dead; the attempts after that pin every
// entry, so that a request in a full store cannot have its entries evicted
// by its own insertions over and over.
func (s *typedStore[S, P]) evaluate(spaces []uint32, segs []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool {
	n := len(segs)
	spaces, limits, out = spaces[:n], limits[:n], out[:n]
	// es holds the entries in request order, lk the same in lock order;
	// bit i of pinned is set when es[i] is pinned.
	// bit i of found is set when es[i] came from the map, hs[i] its hash.
	var es, lk [maxRequestKeys]*entry[S]
	var hs [maxRequestKeys]uint64
	var pinned, found uint8
	pin := false
	for ; ; pin = true {
		found = 0
		for i, seg := range segs {
			space := spaces[i]
			// A whole prefix's slot (no hash) or the cache first; a retry
			// bypasses them: it pins its entries, which needs the map.
			key := memKey{keyID: keyID{space: space, seg: seg}}
			whole := isWhole(key.keyID)
			if !whole {
				key.hash = s.h.sum(key.keyID)
			}
			var e *entry[S]
			switch {
			case pin:
			case whole:
				e = s.empty[space].Load()
			default:
				e = s.cached(key)
			}
			if e == nil {
				if whole {
					key.hash = s.h.sum(key.keyID)
				}
				var p bool
				if e, p = s.acquire(key, nowUS, pin); p {
					pinned |= 1 << i
				}
				found |= 1 << i
				hs[i] = key.hash
			}
			es[i] = e
			j := i // insertion sort by entry id, as the entries come
			for ; j > 0 && lk[j-1].id > e.id; j-- {
				lk[j] = lk[j-1]
			}
			lk[j] = e
		}
		dead := false
		for _, e := range lk[:n] {
			e.mu.Lock()
			dead = dead || e.dead
		}
		if !dead {
			break
		}
		// Evicted between lookup and lock (rare): start over.
		s.release(&lk, &es, pinned, n)
		pinned = 0
	}

	if found != 0 {
		s.fill(&es, &hs, found, pin)
	}
	var ok [maxRequestKeys]bool
	admitted := true
	for i := 0; i < n; i++ {
		ok[i] = P(&es[i].state).Check(limits[i], nowUS)
		admitted = admitted && ok[i]
	}
	for i := 0; i < n; i++ {
		st := P(&es[i].state)
		out[i] = st.Finish(limits[i], nowUS, ok[i], admitted)
		es[i].noteExpiry(st.ExpiresAtUS(limits[i]), limits[i].WindowUS)
	}
	// One call in sweepOneIn sweeps: the first-locked entry's count of
	// calls, offset by its id, picks them. Entries are locked here already,
	// so this costs an increment, far less than a random draw: a hot key
	// sweeps on every sweepOneIn-th of its calls,
	// new keys (sequential ids) on one in sweepOneIn.
	first := lk[0]
	first.calls++
	sweep := (first.id+uint64(first.calls))&(sweepOneIn-1) == 0
	s.release(&lk, &es, pinned, n)

	if sweep {
		s.sweep(nowUS)
	}
	return admitted
}

// release unlocks the request's entries in reverse lock order (lk), then
// unpins the pinned ones (es[i] for each bit i set in pinned).
func (s *typedStore[S, P]) release(lk, es *[maxRequestKeys]*entry[S], pinned uint8, n int) {
	for j := n - 1; j >= 0; j-- {
		lk[j].mu.Unlock()
	}
	for ; pinned != 0; pinned &= pinned - 1 {
		es[bits.TrailingZeros8(pinned)].pins.Add(-1)
	}
}

// fill puts the entries es[i] found in the map (bit i of found; hs[i] the
// hash of their key) in their slots: a whole prefix's always (the slot is
// its own), another's at its first lookup, then one in fillOneIn, and on a
// retry (all: a slot may have given the dead entry). The entries are
// locked and live.
func (s *typedStore[S, P]) fill(es *[maxRequestKeys]*entry[S], hs *[maxRequestKeys]uint64, found uint8, retry bool) {
	for ; found != 0; found &= found - 1 {
		i := bits.TrailingZeros8(found)
		e := es[i]
		if isWhole(e.key) {
			s.empty[e.key.space].Store(e)
			continue
		}
		e.finds++
		if (e.finds-1)&(fillOneIn-1) == 0 || retry {
			c := &s.cache[cacheIndex(hs[i])]
			c.e.Store(e)
			c.hash.Store(hs[i])
		}
	}
}

// acquire returns the live entry for key (which has its hash) from the
// map, creating it if needed, and whether it pinned it, so that eviction
// leaves it alone until release: always when it created it, else when pin
// is set.
func (s *typedStore[S, P]) acquire(key memKey, nowUS int64, pin bool) (*entry[S], bool) {
	e, ok := s.m.Load(key)
	pinned := pin
	switch {
	case !ok:
		e, pinned = s.insert(key, nowUS, pin)
	case pin:
		e.pins.Add(1)
	}
	return e, pinned
}

// insert is acquire of a key the map did not hold a moment ago: it adds an
// entry unless another request has just done so.
func (s *typedStore[S, P]) insert(key memKey, nowUS int64, pin bool) (*entry[S], bool) {
	key.seg = strings.Clone(key.seg) // may be a view of the caller's buffer
	ne := &entry[S]{key: key.keyID, id: s.lastID.Add(1)}
	ne.pins.Store(1)
	if e, loaded := s.m.LoadOrStore(key, ne); loaded {
		if pin {
			e.pins.Add(1)
		}
		return e, pin
	}
	s.slotsMu.Lock()
	ne.slot = len(s.slots)
	s.slots = append(s.slots, ne)
	if len(s.slots) > s.maxKeys {
		s.makeRoom(nowUS)
	}
	s.slotsMu.Unlock()
	return ne, true
}

// sweep examines a few keys from a rotating cursor and drops the expired ones
// (§10: incremental, never a pass over every key). It skips the work if
// another call is sweeping or inserting.
func (s *typedStore[S, P]) sweep(nowUS int64) {
	if !s.slotsMu.TryLock() {
		return
	}
	s.evictExpired(min(sweepKeys, len(s.slots)), nowUS, 0) // a small store: each key once
	s.slotsMu.Unlock()
}

// evictExpired examines up to n keys from the rotating cursor, dropping the
// expired ones, and stops early once at most keep keys remain (keep 0: never).
// slotsMu must be held.
func (s *typedStore[S, P]) evictExpired(n int, nowUS int64, keep int) {
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
func (s *typedStore[S, P]) makeRoom(nowUS int64) {
	s.evictExpired(spaceScan, nowUS, s.maxKeys)
	for attempt := 0; attempt < 4 && len(s.slots) > s.maxKeys; attempt++ {
		var victim *entry[S]
		var victimExp int64
		for i := 0; i < spaceSample; i++ {
			e := s.slots[rand.IntN(len(s.slots))] // #nosec G404 -- samples eviction candidates for spread, not secrecy; a full store evicts either way
			if e.pins.Load() > 0 || !e.mu.TryLock() {
				continue
			}
			exp := e.expiresAtUS.Load()
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
func (s *typedStore[S, P]) tryEvict(e *entry[S], nowUS int64, onlyExpired bool) bool {
	// A live entry is passed over without its lock (most of what a sweep
	// examines); the test is repeated under the lock, since a request may
	// have extended it meanwhile.
	if e.pins.Load() > 0 || (onlyExpired && e.expiresAtUS.Load() > nowUS) || !e.mu.TryLock() {
		return false
	}
	defer e.mu.Unlock()
	if e.pins.Load() > 0 || (onlyExpired && e.expiresAtUS.Load() > nowUS) {
		return false
	}
	e.dead = true
	key := memKey{hash: s.h.sum(e.key), keyID: e.key}
	s.m.Delete(key)
	// Unless another entry is in its slot already.
	if isWhole(e.key) {
		s.empty[e.key.space].CompareAndSwap(e, nil)
	} else {
		s.cache[cacheIndex(key.hash)].e.CompareAndSwap(e, nil)
	}
	last := s.slots[len(s.slots)-1]
	s.slots[e.slot] = last
	last.slot = e.slot
	s.slots[len(s.slots)-1] = nil
	s.slots = s.slots[:len(s.slots)-1]
	return true
}
