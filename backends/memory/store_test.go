package memory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

const sec = int64(1_000_000)

var kinds = []algorithms.Kind{algorithms.FixedWindow, algorithms.SlidingWindow, algorithms.TokenBucket}

// inspector looks into a store's typedStore (methods below, test-only).
type inspector interface {
	contains(key string) bool
	mapLen() int
	sweep(nowUS int64)
	expiry(key string, l algorithms.Limit) (stored, state int64)
	entryOf(key string) any
	inCache(key string) bool
	cachedAny(key string) bool
	evict(key string)
	plant(key string, e any)
	cacheCollision(prefix string) (a, b string)
}

func inspect(s *Store) inspector { return s.impl.(inspector) }

func (s *typedStore[S, P]) contains(key string) bool {
	_, ok := s.m.Load(s.key(0, key))
	return ok
}

func (s *typedStore[S, P]) mapLen() int { return s.m.Size() }

// entryOf returns the map's entry for key (a whole key, prefix id 0), or nil.
func (s *typedStore[S, P]) entryOf(key string) any {
	if e, ok := s.m.Load(s.key(0, key)); ok {
		return e
	}
	return nil
}

// inCache reports whether key's cache slot holds the map's entry for it.
func (s *typedStore[S, P]) inCache(key string) bool {
	k := s.key(0, key)
	e, ok := s.m.Load(k)
	return ok && s.cached(k) == e
}

// cachedAny reports whether key's cache slot holds an entry of key, live
// or not.
func (s *typedStore[S, P]) cachedAny(key string) bool { return s.cached(s.key(0, key)) != nil }

// evict removes key as a full store would (not pinned, not locked).
func (s *typedStore[S, P]) evict(key string) {
	e, _ := s.m.Load(s.key(0, key))
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	if !s.tryEvict(e, 0, false) {
		panic("evict: entry in use")
	}
}

// plant puts entry e (from entryOf) in key's cache slot, under key's hash:
// what a slot would hold if a fill raced with an eviction, or if two keys
// shared a hash.
func (s *typedStore[S, P]) plant(key string, e any) {
	k := s.key(0, key)
	c := &s.cache[cacheIndex(k.hash)]
	c.e.Store(e.(*entry[S]))
	c.hash.Store(k.hash)
}

// cacheCollision returns two distinct keys starting with prefix that share
// a cache slot (not a hash).
func (s *typedStore[S, P]) cacheCollision(prefix string) (a, b string) {
	seen := map[uint64]string{}
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		idx := cacheIndex(s.key(0, k).hash)
		if prev, ok := seen[idx]; ok {
			return prev, k
		}
		seen[idx] = k
	}
}

// expiry returns the expiry the sweep reads for key and the one its state
// computes under limit l (the key must be present).
func (s *typedStore[S, P]) expiry(key string, l algorithms.Limit) (stored, state int64) {
	e, _ := s.m.Load(s.key(0, key))
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.expiresAtUS.Load(), P(&e.state).ExpiresAtUS(l)
}

// newStore is New that fails the test on an error.
func newStore(t testing.TB, kind algorithms.Kind, maxKeys int) *Store {
	t.Helper()
	s, err := New(kind, maxKeys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func eval(t testing.TB, s *Store, keys []string, limits []algorithms.Limit, now int64) (bool, []algorithms.Outcome) {
	t.Helper()
	out := make([]algorithms.Outcome, len(keys))
	ok, err := s.Evaluate(context.Background(), keys, limits, now, out)
	if err != nil {
		t.Fatal(err)
	}
	return ok, out
}

func TestBadRequests(t *testing.T) {
	s := newStore(t, algorithms.FixedWindow, 10)
	l := algorithms.Limit{Limit: 1, WindowUS: sec}
	out := make([]algorithms.Outcome, 5)
	tests := []struct {
		name   string
		keys   []string
		limits []algorithms.Limit
		now    int64
	}{
		{"no keys", nil, nil, 1},
		{"five keys", []string{"a", "b", "c", "d", "e"}, []algorithms.Limit{l, l, l, l, l}, 1},
		{"duplicate among four", []string{"d", "b", "c", "b"}, []algorithms.Limit{l, l, l, l}, 1},
		{"limits mismatch", []string{"a", "b"}, []algorithms.Limit{l}, 1},
		{"duplicate key", []string{"a", "b", "a"}, []algorithms.Limit{l, l, l}, 1},
		{"zero limit", []string{"a"}, []algorithms.Limit{{Limit: 0, WindowUS: sec}}, 1},
		{"zero window", []string{"a"}, []algorithms.Limit{{Limit: 1}}, 1},
		{"negative time", []string{"a"}, []algorithms.Limit{l}, -5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Evaluate(context.Background(), tt.keys, tt.limits, tt.now, out)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v, want ErrBadRequest", err)
			}
		})
	}
	if s.Len() != 0 {
		t.Fatalf("bad requests left %d keys", s.Len())
	}
}

// TestNewRefuses: a store is made for one known algorithm and at least one key.
func TestNewRefuses(t *testing.T) {
	if _, err := New(algorithms.Kind(9), 10); err == nil {
		t.Error("New accepted an unknown algorithm")
	}
	if _, err := New(algorithms.FixedWindow, 0); err == nil {
		t.Error("New accepted maxKeys 0")
	}
	for _, kind := range kinds {
		if s := newStore(t, kind, 1); s.Algorithm() != kind {
			t.Errorf("store for %v reports %v", kind, s.Algorithm())
		}
	}
}

func TestClockWhenNowIsZero(t *testing.T) {
	s := newStore(t, algorithms.FixedWindow, 10)
	s.now = func() int64 { return 42*sec + 1 }
	_, out := eval(t, s, []string{"k"}, []algorithms.Limit{{Limit: 2, WindowUS: sec}}, 0)
	if out[0].ResetAtUS != 43*sec {
		t.Fatalf("reset %d, want the clock's window end %d", out[0].ResetAtUS, 43*sec)
	}
}

// TestConcurrentExactCount: many goroutines on one key admit exactly the limit.
func TestConcurrentExactCount(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 100)
			const limit, workers, each = 500, 8, 200
			lim := []algorithms.Limit{{Limit: limit, WindowUS: 60 * sec}}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out := make([]algorithms.Outcome, 1)
					for i := 0; i < each; i++ {
						ok, err := s.Evaluate(context.Background(), []string{"hot"}, lim, 120*sec, out)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							admitted.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if admitted.Load() != limit {
				t.Fatalf("admitted %d of %d, want exactly %d", admitted.Load(), workers*each, limit)
			}
		})
	}
}

// TestConcurrentAllOrNothing: requests over overlapping key sets, from many
// goroutines, never consume in one key when another refused (§4): each key's
// final count equals the admitted requests that included it.
func TestConcurrentAllOrNothing(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 100)
			users := []string{"u0", "u1", "u2"}
			tools := []string{"t0", "t1"}
			limUser := algorithms.Limit{Limit: 40, WindowUS: 3600 * sec}
			limTool := algorithms.Limit{Limit: 50, WindowUS: 3600 * sec}
			now := 7200 * sec
			var mu sync.Mutex
			perKey := map[string]int64{}
			var wg sync.WaitGroup
			for w := 0; w < 6; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					out := make([]algorithms.Outcome, 2)
					for i := 0; i < 100; i++ {
						keys := []string{users[(w+i)%3], tools[(w*7+i)%2]}
						ok, err := s.Evaluate(context.Background(), keys, []algorithms.Limit{limUser, limTool}, now, out)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							mu.Lock()
							perKey[keys[0]]++
							perKey[keys[1]]++
							mu.Unlock()
						}
					}
				}(w)
			}
			wg.Wait()
			// Read each key's usage back with one more request on it alone.
			for _, k := range append(users, tools...) {
				lim := limUser
				if k[0] == 't' {
					lim = limTool
				}
				_, out := eval(t, s, []string{k}, []algorithms.Limit{lim}, now)
				used := lim.Limit - out[0].Remaining
				if out[0].OK {
					used-- // the probe itself was admitted
				}
				if used != perKey[k] {
					t.Errorf("key %s: state says %d used, %d admitted requests included it", k, used, perKey[k])
				}
				if perKey[k] > lim.Limit {
					t.Errorf("key %s: %d admitted over limit %d", k, perKey[k], lim.Limit)
				}
			}
		})
	}
}

// TestBoundHolds: the store never holds more than memory_max_keys keys.
func TestBoundHolds(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 100)
			lim := []algorithms.Limit{{Limit: 5, WindowUS: 3600 * sec}}
			for i := 0; i < 1000; i++ {
				eval(t, s, []string{fmt.Sprintf("k%d", i)}, lim, 3600*sec+int64(i))
				if s.Len() > 100 {
					t.Fatalf("after %d keys the store holds %d", i+1, s.Len())
				}
			}
			if n := inspect(s).mapLen(); n != s.Len() {
				t.Fatalf("map holds %d, slots %d", n, s.Len())
			}
		})
	}
}

// TestEvictsExpiredFirst: at capacity, expired keys go before live ones.
func TestEvictsExpiredFirst(t *testing.T) {
	s := newStore(t, algorithms.FixedWindow, 20)
	short := []algorithms.Limit{{Limit: 5, WindowUS: sec}}
	long := []algorithms.Limit{{Limit: 5, WindowUS: 3600 * sec}}
	now := 3600 * sec
	for i := 0; i < 10; i++ {
		eval(t, s, []string{fmt.Sprintf("live%d", i)}, long, now)
		eval(t, s, []string{fmt.Sprintf("short%d", i)}, short, now)
	}
	now += 2 * sec // every short key has expired
	for i := 0; i < 10; i++ {
		eval(t, s, []string{fmt.Sprintf("new%d", i)}, long, now)
	}
	for i := 0; i < 10; i++ {
		if !inspect(s).contains(fmt.Sprintf("live%d", i)) {
			t.Errorf("live%d evicted while expired keys remained", i)
		}
	}
	if s.Len() > 20 {
		t.Fatalf("store holds %d", s.Len())
	}
}

// TestSweepIsIncremental: expired keys are reclaimed a few per call, not all at once.
func TestSweepIsIncremental(t *testing.T) {
	s := newStore(t, algorithms.FixedWindow, 10_000)
	lim := []algorithms.Limit{{Limit: 5, WindowUS: sec}}
	now := 100 * sec
	for i := 0; i < 2000; i++ {
		eval(t, s, []string{fmt.Sprintf("k%d", i)}, lim, now)
	}
	before := s.Len()
	now += 5 * sec
	eval(t, s, []string{"hot"}, lim, now)
	if after := s.Len(); before-after > sweepKeys {
		t.Fatalf("one call evicted %d keys, want at most %d", before-after, sweepKeys)
	}
	for i := 0; i < 50_000 && s.Len() > 1; i++ {
		eval(t, s, []string{"hot"}, lim, now)
	}
	if s.Len() != 1 {
		t.Fatalf("%d keys left after the sweep had time to pass every key", s.Len())
	}
}

// TestEvictionIsInvisible: a key dropped after it expired answers like a
// key that was kept (§3 "may be dropped", §10).
func TestEvictionIsInvisible(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			lim := []algorithms.Limit{{Limit: 3, WindowUS: sec}}
			kept, evicting := newStore(t, kind, 1000), newStore(t, kind, 1000)
			now := 50 * sec
			dropped := false
			for step := 0; step < 60; step++ {
				now += int64(step%7) * 300_000
				// Sweep eagerly first: the key is dropped whenever it has expired.
				inspect(evicting).sweep(now)
				present := inspect(evicting).contains("k")
				dropped = dropped || !present
				ok1, o1 := eval(t, kept, []string{"k"}, lim, now)
				ok2, o2 := eval(t, evicting, []string{"k"}, lim, now)
				if ok1 != ok2 || o1[0] != o2[0] {
					t.Fatalf("step %d: kept %v %+v, evicting %v %+v", step, ok1, o1[0], ok2, o2[0])
				}
				if !inspect(kept).contains("k") {
					t.Fatal("the big store dropped the key")
				}
			}
			if !dropped {
				t.Fatal("the trace never let the key expire: the test proves nothing")
			}
		})
	}
}

// TestFullStoreMakesProgress: requests of several keys each, from many
// goroutines, in a store far too small for them, all complete (an evicted
// entry sends its request round again; the retry pins its entries, so a
// request's own insertions cannot evict them over and over), and the store
// returns to its bound once they are done.
func TestFullStoreMakesProgress(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 1)
			lim := algorithms.Limit{Limit: 1000, WindowUS: 3600 * sec}
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					out := make([]algorithms.Outcome, 3)
					for i := 0; i < 300; i++ {
						keys := []string{fmt.Sprintf("a%d", (w+i)%5), fmt.Sprintf("b%d", i%3), fmt.Sprintf("c%d", w)}
						if _, err := s.Evaluate(context.Background(), keys, []algorithms.Limit{lim, lim, lim}, 7200*sec+int64(i), out); err != nil {
							t.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			// Keys pinned by requests in flight are never evicted, so the store may end
			// above its bound; each later insertion evicts a few unpinned keys (makeRoom),
			// so with no request in flight a handful of new keys bring it back to 1. (One
			// was not always enough: CI once ended the concurrent phase 8 keys over.)
			after := s.Len()
			for i := 0; i < 20 && (i == 0 || s.Len() > 1); i++ {
				eval(t, s, []string{fmt.Sprintf("last%d", i)}, []algorithms.Limit{lim}, 7300*sec)
			}
			if s.Len() != 1 {
				t.Fatalf("store holds %d keys after 20 more requests (%d when the concurrent ones ended), want 1",
					s.Len(), after)
			}
		})
	}
}

// TestSlottedKeysExactUnderEviction: hot keys are found through a slot (a
// whole prefix's own, the cache for others) as well as the map; while a full
// store evicts them (expired, at each new window) and many goroutines use
// them, every window still admits exactly the limit (an evicted entry read
// from a slot must cost a retry, never a count), and each key keeps its own
// count.
func TestSlottedKeysExactUnderEviction(t *testing.T) {
	for _, seg := range []string{"", "search"} {
		t.Run(fmt.Sprintf("segment %q", seg), func(t *testing.T) { testSlottedKeysExact(t, seg) })
	}
}

func testSlottedKeysExact(t *testing.T, toolSeg string) {
	const windows, workers, each = 40, 4, 30
	// Room for one window's keys: from the second window on, every new user
	// evicts an expired key, the tools' among them.
	s := newStore(t, algorithms.FixedWindow, workers*each+2)
	tools := []uint32{s.KeySpace("rl:fw:tool:5/1:{a}"), s.KeySpace("rl:fw:tool:5/1:{b}")}
	users := s.KeySpace("rl:fw:user:1000000/1:")
	toolLim := algorithms.Limit{Limit: 5, WindowUS: sec}
	userLim := algorithms.Limit{Limit: 1_000_000, WindowUS: sec}
	var admitted [windows][2]atomic.Int64
	for w := 0; w < windows; w++ {
		now := (100 + int64(w)) * sec
		var wg sync.WaitGroup
		for g := 0; g < workers; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				out := make([]algorithms.Outcome, 2)
				for i := 0; i < each; i++ {
					tool := w % 2 // each tool idles every other window, expires and is evicted
					seg := fmt.Sprintf("u%d-%d-%d", w, g, i)
					ok, err := s.EvaluateSegments(context.Background(), []uint32{users, tools[tool]}, []string{seg, toolSeg},
						[]algorithms.Limit{userLim, toolLim}, now+int64(i), out)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						admitted[w][tool].Add(1)
					}
				}
			}(g)
		}
		wg.Wait()
	}
	if n := inspect(s).mapLen(); n > workers*each+2 {
		t.Fatalf("store holds %d keys, bound %d", n, workers*each+2)
	}
	for w := range admitted {
		for tool := range admitted[w] {
			want := toolLim.Limit
			if tool != w%2 {
				want = 0
			}
			if got := admitted[w][tool].Load(); got != want {
				t.Errorf("window %d, tool %d: admitted %d, want exactly %d", w, tool, got, want)
			}
		}
	}
}

// TestStoredExpiryFollowsState: the expiry the sweep reads without a lock
// is written only when the state's leaves its slack (noteExpiry); after
// every request it must still be no earlier than the one the state
// computes and at most an eighth of the window later, whatever the trace:
// admitted and refused requests, time standing still or going back, a
// window that changes.
func TestStoredExpiryFollowsState(t *testing.T) {
	short := algorithms.Limit{Limit: 2, WindowUS: sec}
	long := algorithms.Limit{Limit: 2, WindowUS: 10 * sec}
	steps := []struct {
		dt  int64 // added to the time before the request
		lim algorithms.Limit
	}{
		{0, short}, {1, short}, {0, short}, {2, short}, // admitted, admitted, refused, refused
		{sec, short}, {-sec / 2, short}, {0, short}, // next window; back in time
		{3 * sec, long}, {1, long}, {1, short}, {1, long}, {20 * sec, short}, {5, short},
	}
	// Then a busy key, one request per µs under a million per second: the
	// sliding window's and token bucket's expiry moves 1 µs per request, so
	// it passes the stored one by exactly 1 µs once per slack.
	busy := algorithms.Limit{Limit: 1_000_000, WindowUS: sec}
	for i := 0; i < 200_000; i++ {
		steps = append(steps, struct {
			dt  int64
			lim algorithms.Limit
		}{1, busy})
	}
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 10)
			now := 100 * sec
			for i, st := range steps {
				now += st.dt
				eval(t, s, []string{"k"}, []algorithms.Limit{st.lim}, now)
				// Never before the state's (a live entry would be evicted),
				// at most an eighth of the window after it (noteExpiry).
				stored, state := inspect(s).expiry("k", st.lim)
				if stored < state || stored > state+st.lim.WindowUS/8 {
					t.Fatalf("step %d: stored expiry %d, state's %d, window %d", i, stored, state, st.lim.WindowUS)
				}
			}
		})
	}
}

// TestCacheKeepsKeysApart: a cache slot holds one key's entry; keys whose
// hashes share a slot, or an entry planted under another key's hash, must
// each be counted on their own entry (the cache compares the key, not only
// the hash).
func TestCacheKeepsKeysApart(t *testing.T) {
	lim := algorithms.Limit{Limit: 100, WindowUS: 3600 * sec}
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 100)
			a, b := inspect(s).cacheCollision("user")
			now := 7200 * sec
			used := map[string]int64{}
			req := func(key string) {
				t.Helper()
				_, out := eval(t, s, []string{key}, []algorithms.Limit{lim}, now)
				used[key]++
				if got, want := out[0].Remaining, lim.Limit-used[key]; got != want {
					t.Fatalf("%s after %d requests: remaining %d, want %d", key, used[key], got, want)
				}
			}
			req(a)
			if !inspect(s).inCache(a) {
				t.Fatal("the first lookup of a key did not fill its cache slot: the test proves nothing")
			}
			req(b) // same slot: takes it over
			if !inspect(s).inCache(b) || inspect(s).inCache(a) {
				t.Fatalf("slot shared by %s and %s: want the last looked up (%s) in it", a, b, b)
			}
			for _, k := range []string{a, a, b, a, b, b} {
				req(k)
			}
			// a's entry under b's hash, in b's slot: b must still be b.
			inspect(s).plant(b, inspect(s).entryOf(a))
			req(b)
			req(a)
		})
	}
}

// TestCacheDropsEvictedEntry: eviction clears the entry's cache slot, and an
// evicted entry read from a slot (a request that read it just before the
// eviction) is found dead and looked up again: the key's count goes on in
// its new entry, never in the dead one.
func TestCacheDropsEvictedEntry(t *testing.T) {
	lim := algorithms.Limit{Limit: 100, WindowUS: 3600 * sec}
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			s := newStore(t, kind, 100)
			now := 7200 * sec
			remaining := func() int64 {
				t.Helper()
				_, out := eval(t, s, []string{"alice"}, []algorithms.Limit{lim}, now)
				return out[0].Remaining
			}
			remaining()
			remaining()
			if !inspect(s).inCache("alice") {
				t.Fatal("the key is not in the cache: the test proves nothing")
			}
			old := inspect(s).entryOf("alice")
			inspect(s).evict("alice")
			if inspect(s).entryOf("alice") != nil {
				t.Fatal("evict left the key in the map")
			}
			if inspect(s).inCache("alice") || inspect(s).cachedAny("alice") {
				t.Fatal("eviction left the entry in its cache slot")
			}
			// Eviction forgets the count: a new entry starts from zero.
			if got := remaining(); got != lim.Limit-1 {
				t.Fatalf("after eviction: remaining %d, want %d", got, lim.Limit-1)
			}
			inspect(s).plant("alice", old) // the dead entry back in the slot
			if got := remaining(); got != lim.Limit-2 {
				t.Fatalf("with the dead entry in the slot: remaining %d, want %d", got, lim.Limit-2)
			}
			if !inspect(s).inCache("alice") {
				t.Fatal("the live entry did not replace the dead one in the slot")
			}
			if got := remaining(); got != lim.Limit-3 {
				t.Fatalf("remaining %d, want %d", got, lim.Limit-3)
			}
		})
	}
}

// TestBadSegmentRequests: EvaluateSegments refuses each kind of bad input
// with its own error, and when several checks fail, with the first in the
// documented order (sizes, limits, time, prefix ids, duplicates), as the
// checks did before they were inlined.
func TestBadSegmentRequests(t *testing.T) {
	l := algorithms.Limit{Limit: 1, WindowUS: sec}
	bad := algorithms.Limit{Limit: 0, WindowUS: sec}
	tests := []struct {
		name   string
		spaces []uint32
		segs   []string
		limits []algorithms.Limit
		out    int
		now    int64
		clock  int64 // the store's clock, for now 0
		want   string
	}{
		{"no keys", nil, nil, nil, 5, 1, 1, "0 keys, 0 limits, 5 outcomes"},
		{"five keys", []uint32{1, 2, 3, 4, 5}, []string{"a", "b", "c", "d", "e"}, []algorithms.Limit{l, l, l, l, l}, 5, 1, 1, "5 keys, 5 limits, 5 outcomes"},
		{"limits mismatch", []uint32{1, 2}, []string{"a", "b"}, []algorithms.Limit{l}, 5, 1, 1, "2 keys, 1 limits, 5 outcomes"},
		{"few outcomes", []uint32{1, 2}, []string{"a", "b"}, []algorithms.Limit{l, l}, 1, 1, 1, "2 keys, 2 limits, 1 outcomes"},
		{"zero limit", []uint32{1, 2}, []string{"a", "b"}, []algorithms.Limit{l, bad}, 5, 1, 1, "limit 0 per 1000000 µs"},
		{"zero window", []uint32{1}, []string{"a"}, []algorithms.Limit{{Limit: 1}}, 5, 1, 1, "limit 1 per 0 µs"},
		{"negative window", []uint32{1}, []string{"a"}, []algorithms.Limit{{Limit: 1, WindowUS: -1 << 63}}, 5, 1, 1, "limit 1 per -9223372036854775808 µs"},
		{"negative time", []uint32{1}, []string{"a"}, []algorithms.Limit{l}, 5, -5, 1, "negative time"},
		{"negative clock", []uint32{1}, []string{"a"}, []algorithms.Limit{l}, 5, 0, -5, "negative time"},
		{"prefix ids mismatch", []uint32{1}, []string{"a", "b"}, []algorithms.Limit{l, l}, 5, 1, 1, "1 prefix ids for 2 segments"},
		{"duplicate key", []uint32{1, 2, 1}, []string{"a", "b", "a"}, []algorithms.Limit{l, l, l}, 5, 1, 1, "duplicate key"},
		{"duplicate among four", []uint32{1, 2, 3, 2}, []string{"a", "b", "c", "b"}, []algorithms.Limit{l, l, l, l}, 5, 1, 1, "duplicate key"},
		// Several faults: the first in order is reported.
		{"zero limit and negative time", []uint32{1}, []string{"a"}, []algorithms.Limit{bad}, 5, -5, 1, "limit 0 per"},
		{"negative time and duplicate", []uint32{1, 1}, []string{"a", "a"}, []algorithms.Limit{l, l}, 5, -5, 1, "negative time"},
		{"zero limit and duplicate", []uint32{1, 1}, []string{"a", "a"}, []algorithms.Limit{l, bad}, 5, 1, 1, "limit 0 per"},
		{"prefix ids and duplicate", []uint32{1, 1, 1}, []string{"a", "a"}, []algorithms.Limit{l, l}, 5, 1, 1, "3 prefix ids for 2 segments"},
		{"negative clock and duplicate", []uint32{1, 1}, []string{"a", "a"}, []algorithms.Limit{l, l}, 5, 0, -5, "negative time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, algorithms.FixedWindow, 10)
			s.now = func() int64 { return tt.clock }
			ok, err := s.EvaluateSegments(context.Background(), tt.spaces, tt.segs, tt.limits, tt.now, make([]algorithms.Outcome, tt.out))
			if ok || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("admitted %v, error %v, want ErrBadRequest", ok, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to say %q", err, tt.want)
			}
			if s.Len() != 0 {
				t.Fatalf("a bad request left %d keys", s.Len())
			}
		})
	}
	// The same keys told apart by their prefix ids are no duplicates.
	s := newStore(t, algorithms.FixedWindow, 10)
	if _, err := s.EvaluateSegments(context.Background(), []uint32{1, 2}, []string{"a", "a"}, []algorithms.Limit{l, l}, 1, make([]algorithms.Outcome, 2)); err != nil {
		t.Fatal(err)
	}
}

// TestHotKeyAllocatesNothing: a request on keys the store holds allocates
// nothing, through either entry (Evaluate's prefix ids are a shared array:
// a local one would escape through the evaluator interface).
func TestHotKeyAllocatesNothing(t *testing.T) {
	s := newStore(t, algorithms.FixedWindow, 10)
	lims := []algorithms.Limit{{Limit: 1 << 40, WindowUS: sec}, {Limit: 1 << 40, WindowUS: sec}}
	out := make([]algorithms.Outcome, 2)
	keys, spaces, segs := []string{"alice", "team"}, []uint32{s.KeySpace("u:"), s.KeySpace("t:")}, []string{"alice", ""}
	ctx := context.Background()
	now := 100 * sec
	for name, call := range map[string]func(){
		"Evaluate":         func() { _, _ = s.Evaluate(ctx, keys, lims, now, out) },
		"EvaluateSegments": func() { _, _ = s.EvaluateSegments(ctx, spaces, segs, lims, now, out) },
	} {
		call() // the keys are created (allocated) once
		if n := testing.AllocsPerRun(100, call); n != 0 {
			t.Errorf("%s: %.1f allocations per call on present keys, want 0", name, n)
		}
	}
}
