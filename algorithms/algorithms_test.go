package algorithms

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

const sec = int64(1_000_000)

// state is the common surface of the three algorithms' states.
type state interface {
	Check(l Limit, nowUS int64) bool
	Finish(l Limit, nowUS int64, ok, admitted bool) Outcome
	ExpiresAtUS(l Limit) int64
}

func newState(k Kind) state {
	switch k {
	case FixedWindow:
		return &FixedWindowState{}
	case SlidingWindow:
		return &SlidingWindowState{}
	case TokenBucket:
		return &TokenBucketState{}
	}
	panic(fmt.Sprintf("no state for %v", k))
}

// step is one request against a single key; otherBlocks means another
// dimension refused the request (§4), so this key must not consume.
type step struct {
	atUS        int64
	otherBlocks bool
	want        Outcome
}

// run evaluates one request against s like a one- or two-dimension engine.
func run(s state, l Limit, st step) Outcome {
	ok := s.Check(l, st.atUS)
	return s.Finish(l, st.atUS, ok, ok && !st.otherBlocks)
}

func TestWorkedExamplesAndEdges(t *testing.T) {
	tests := []struct {
		name  string
		kind  Kind
		limit Limit
		steps []step
	}{
		{
			// §3.1 worked example, 3/s at 10.0, 10.2, 10.4, 10.6, 11.0 s.
			name: "§3.1 worked example", kind: FixedWindow, limit: Limit{3, sec},
			steps: []step{
				{atUS: 10 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 11 * sec}},
				{atUS: 10*sec + 200_000, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 11 * sec}},
				{atUS: 10*sec + 400_000, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 11 * sec}},
				{atUS: 10*sec + 600_000, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 11 * sec, RetryAfterUS: 400_000}},
				{atUS: 11 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 12 * sec}},
			},
		},
		{
			// §3.1: the last µs of a window still counts in it; windows are epoch aligned.
			name: "§3.1 window edges", kind: FixedWindow, limit: Limit{1, 60 * sec},
			steps: []step{
				{atUS: 120*sec - 1, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 120 * sec}},
				{atUS: 120*sec - 1, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 120 * sec, RetryAfterUS: 1}},
				{atUS: 120 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 180 * sec}},
			},
		},
		{
			// §3.1, §4: blocked by another dimension, nothing is counted; a stale
			// window read while blocked leaves the stored (later) window intact.
			name: "§3.1 blocked elsewhere writes nothing", kind: FixedWindow, limit: Limit{2, sec},
			steps: []step{
				{atUS: 5 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 6 * sec}},
				{atUS: 5*sec + 1, otherBlocks: true, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 6 * sec}},
				{atUS: 4 * sec, otherBlocks: true, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 5 * sec}},
				{atUS: 5*sec + 2, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 6 * sec}},
				{atUS: 5*sec + 3, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 6 * sec, RetryAfterUS: sec - 3}},
			},
		},
		{
			// §3.2 worked example, 2/s at 0.0, 0.5, 0.7, 1.0, 1.2 s (on an epoch offset).
			name: "§3.2 worked example", kind: SlidingWindow, limit: Limit{2, sec},
			steps: []step{
				{atUS: 100 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 101 * sec}},
				{atUS: 100*sec + 500_000, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 101 * sec}},
				{atUS: 100*sec + 700_000, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 101 * sec, RetryAfterUS: 300_000}},
				{atUS: 101 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 101*sec + 500_000}},
				{atUS: 101*sec + 200_000, want: Outcome{
					OK: false, Remaining: 0, ResetAtUS: 101*sec + 500_000, RetryAfterUS: 300_000}},
			},
		},
		{
			// §3.2: several requests at one instant are separate entries; the
			// entry stops counting at exactly t + W, not a µs earlier.
			name: "§3.2 same instant and exact expiry", kind: SlidingWindow, limit: Limit{3, sec},
			steps: []step{
				{atUS: 7 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 8 * sec}},
				{atUS: 7 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 8 * sec}},
				{atUS: 7 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 8 * sec}},
				{atUS: 8*sec - 1, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 8 * sec, RetryAfterUS: 1}},
				{atUS: 8 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 9 * sec}},
			},
		},
		{
			// §3.2, §4: blocked elsewhere appends nothing; an empty log reports now + W.
			name: "§3.2 blocked elsewhere appends nothing", kind: SlidingWindow, limit: Limit{1, 60 * sec},
			steps: []step{
				{atUS: 1000 * sec, otherBlocks: true, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 1060 * sec}},
				{atUS: 1001 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 1061 * sec}},
				{atUS: 1002 * sec, otherBlocks: true, want: Outcome{
					OK: false, Remaining: 0, ResetAtUS: 1061 * sec, RetryAfterUS: 59 * sec}},
				{atUS: 1061 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 1121 * sec}},
			},
		},
		{
			// §3.2: a clock stepped back inserts in order; the oldest entry drives reset.
			name: "§3.2 out of order insert", kind: SlidingWindow, limit: Limit{3, 10 * sec},
			steps: []step{
				{atUS: 50 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 60 * sec}},
				{atUS: 45 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 55 * sec}},
				{atUS: 52 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 55 * sec}},
				{atUS: 56 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 60 * sec}},
			},
		},
		{
			// §3.3 worked example, 2/s at 0.0, 0.0, 0.0, 0.25, 0.5 s (on an epoch offset).
			name: "§3.3 worked example", kind: TokenBucket, limit: Limit{2, sec},
			steps: []step{
				{atUS: 20 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 20*sec + 500_000}},
				{atUS: 20 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 21 * sec}},
				{atUS: 20 * sec, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 21 * sec, RetryAfterUS: 500_000}},
				{atUS: 20*sec + 250_000, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 21 * sec, RetryAfterUS: 250_000}},
				{atUS: 20*sec + 500_000, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 21*sec + 500_000}},
			},
		},
		{
			// §3.3: refill is never lost to rounding, whatever the call frequency
			// (the earlier implementation's fault): blocked calls every µs do not
			// delay the token, which arrives at exactly W / L.
			name: "§3.3 frequent calls keep refilling", kind: TokenBucket, limit: Limit{1, sec},
			steps: []step{
				{atUS: 30 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 31 * sec}},
				{atUS: 30*sec + 1, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 31 * sec, RetryAfterUS: sec - 1}},
				{atUS: 30*sec + 2, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 31 * sec, RetryAfterUS: sec - 2}},
				{atUS: 31*sec - 1, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 31 * sec, RetryAfterUS: 1}},
				{atUS: 31 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 32 * sec}},
			},
		},
		{
			// §3.3: retry_after rounds up to the µs when L does not divide W; a
			// long idle gap refills exactly to capacity, no more.
			name: "§3.3 rounding and capacity", kind: TokenBucket, limit: Limit{3, sec},
			steps: []step{
				{atUS: 40 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 40*sec + 333_334}},
				{atUS: 40 * sec, want: Outcome{OK: true, Remaining: 1, ResetAtUS: 40*sec + 666_667}},
				{atUS: 40 * sec, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 41 * sec}},
				{atUS: 40 * sec, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 41 * sec, RetryAfterUS: 333_334}},
				{atUS: 40*sec + 333_333, want: Outcome{OK: false, Remaining: 0, ResetAtUS: 41 * sec, RetryAfterUS: 1}},
				{atUS: 40*sec + 333_334, want: Outcome{OK: true, Remaining: 0, ResetAtUS: 41*sec + 333_334}},
				{atUS: 1000 * sec, want: Outcome{OK: true, Remaining: 2, ResetAtUS: 1000*sec + 333_334}},
			},
		},
		{
			// §3.3, §4: blocked elsewhere takes no token; largest rate stays exact.
			name: "§3.3 blocked elsewhere and 1000000/h", kind: TokenBucket, limit: Limit{1_000_000, 3600 * sec},
			steps: []step{
				{atUS: 1_700_000_000 * sec, otherBlocks: true, want: Outcome{
					OK: true, Remaining: 1_000_000, ResetAtUS: 1_700_000_000 * sec}},
				{atUS: 1_700_000_000 * sec, want: Outcome{OK: true, Remaining: 999_999, ResetAtUS: 1_700_000_000*sec + 3600}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newState(tt.kind)
			for i, st := range tt.steps {
				if got := run(s, tt.limit, st); got != st.want {
					t.Fatalf("step %d at %d µs: got %+v, want %+v", i, st.atUS, got, st.want)
				}
			}
		})
	}
}

// TestRetryAfterIsExact checks, for every algorithm, that a refused key admits
// exactly at now + RetryAfterUS and not a µs earlier (§3, §7).
func TestRetryAfterIsExact(t *testing.T) {
	limits := []Limit{{1, sec}, {2, sec}, {3, sec}, {7, 60 * sec}, {1000, 3600 * sec}}
	for _, k := range []Kind{FixedWindow, SlidingWindow, TokenBucket} {
		for _, l := range limits {
			t.Run(fmt.Sprintf("%v/%d-%d", k, l.Limit, l.WindowUS), func(t *testing.T) {
				s := newState(k)
				now := 1_234*sec + 567_891
				var out Outcome
				for i := int64(0); i <= l.Limit; i++ {
					out = run(s, l, step{atUS: now + i})
				}
				if out.OK || out.RetryAfterUS <= 0 {
					t.Fatalf("request %d should be refused with a retry time: %+v", l.Limit+1, out)
				}
				at := now + l.Limit + out.RetryAfterUS
				// Check changes nothing but sliding-window housekeeping, which
				// at an earlier instant only drops what a later one drops too.
				if s.Check(l, at-1) {
					t.Fatalf("admits at retry time - 1 µs (%d)", at-1)
				}
				if !s.Check(l, at) {
					t.Fatalf("refuses at retry time %d", at)
				}
			})
		}
	}
}

// TestExpiresAtMeansEmpty checks that state may be dropped at ExpiresAtUS:
// from then on it answers exactly like a new key (§3, §10).
func TestExpiresAtMeansEmpty(t *testing.T) {
	for _, k := range []Kind{FixedWindow, SlidingWindow, TokenBucket} {
		t.Run(k.String(), func(t *testing.T) {
			l := Limit{3, sec}
			s := newState(k)
			now := 500*sec + 123
			for i := int64(0); i < 5; i++ {
				run(s, l, step{atUS: now + i*100_000})
			}
			exp := s.ExpiresAtUS(l)
			if exp <= now {
				t.Fatalf("expiry %d not after the last request", exp)
			}
			got := run(s, l, step{atUS: exp})
			fresh := run(newState(k), l, step{atUS: exp})
			if got != fresh {
				t.Fatalf("at expiry %d: got %+v, a new key gives %+v", exp, got, fresh)
			}
		})
	}
}

func TestEmptyStateExpiresImmediately(t *testing.T) {
	for _, k := range []Kind{FixedWindow, SlidingWindow, TokenBucket} {
		l := Limit{5, 60 * sec}
		if exp := newState(k).ExpiresAtUS(l); exp > l.WindowUS {
			t.Errorf("%v: empty state expires at %d, want <= %d", k, exp, l.WindowUS)
		}
	}
}

func TestSlidingWindowBufferShrinks(t *testing.T) {
	l := Limit{1000, sec}
	var s SlidingWindowState
	now := 10 * sec
	for i := int64(0); i < 1000; i++ {
		run(&s, l, step{atUS: now + i})
	}
	if s.Len() != 1000 {
		t.Fatalf("len %d, want 1000", s.Len())
	}
	big := cap(s.deltas)
	run(&s, l, step{atUS: now + 2*sec})
	if s.Len() != 1 || cap(s.deltas) >= big {
		t.Fatalf("after the burst expired: len %d cap %d (was %d)", s.Len(), cap(s.deltas), big)
	}
}

func TestCeilDiv(t *testing.T) {
	tests := []struct{ a, b, want int64 }{
		{0, 1, 0}, {1, 1, 1}, {1, 2, 1}, {2, 2, 1}, {3, 2, 2},
		{1_000_000, 3, 333_334}, {3_600_000_000_000_000, 1_000_000, 3_600_000_000}, {3_600_000_000_000_001, 1_000_000, 3_600_000_001},
	}
	for _, tt := range tests {
		if got := CeilDiv(tt.a, tt.b); got != tt.want {
			t.Errorf("CeilDiv(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range []Kind{FixedWindow, SlidingWindow, TokenBucket} {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseKind("leaky_bucket"); err == nil {
		t.Error("ParseKind accepted an unknown algorithm")
	}
}

// TestFixedWindowCountMatchesDivision checks the division-free path of the
// fixed window count against the epoch-aligned definition (§3.1) around
// window edges, before, inside and after the stored window.
func TestFixedWindowCountMatchesDivision(t *testing.T) {
	for _, w := range []int64{1, 7, sec, 60 * sec} {
		l := Limit{Limit: 5, WindowUS: w}
		for _, stored := range []int64{0, 3 * w, 1_000 * w} {
			s := FixedWindowState{StartUS: stored, Count: 2}
			for _, now := range []int64{0, 1, stored - 1, stored, stored + 1, stored + w - 1, stored + w, stored + 5*w + 3} {
				if now < 0 {
					continue
				}
				c, start := s.count(l, now)
				wantStart := now - now%w
				wantCount := int64(0)
				if wantStart == stored {
					wantCount = 2
				}
				if c != wantCount || start != wantStart {
					t.Fatalf("window %d, stored %d, now %d: count %d start %d, want %d %d", w, stored, now, c, start, wantCount, wantStart)
				}
			}
		}
	}
}

// times returns the entries held, oldest first.
func (s *SlidingWindowState) times() []int64 {
	if s.n == 0 {
		return nil
	}
	out := make([]int64, 1, s.n+1)
	out[0] = s.oldestUS
	t, rest := s.oldestUS, s.deltas[s.head:]
	for len(rest) > 0 {
		g, w := binary.Uvarint(rest)
		t += int64(g) // #nosec G115 -- a gap between two times below 2^52
		out = append(out, t)
		rest = rest[w:]
	}
	return out
}

// ExpiresAtUS returns the Unix µs from which no entry counts any more and the

// slidingModel is the sliding log of §3.2 written plainly: every entry an
// int64, in order. TestSlidingWindowMatchesModel holds the gap-encoded
// SlidingWindowState to it.
type slidingModel struct{ log []int64 }

func (m *slidingModel) check(l Limit, now int64) bool {
	m.log = slices.DeleteFunc(m.log, func(t int64) bool { return t <= now-l.WindowUS })
	return int64(len(m.log)) < l.Limit
}

func (m *slidingModel) finish(l Limit, now int64, ok, admitted bool) Outcome {
	if admitted {
		i, _ := slices.BinarySearch(m.log, now)
		m.log = slices.Insert(m.log, i, now)
	}
	reset := now + l.WindowUS
	if len(m.log) > 0 {
		reset = m.log[0] + l.WindowUS
	}
	out := Outcome{OK: ok, Remaining: max(0, l.Limit-int64(len(m.log))), ResetAtUS: reset}
	if !admitted && !ok {
		out.RetryAfterUS = reset - now
	}
	return out
}

// TestSlidingWindowMatchesModel drives the state and the model through the
// same random requests: gaps of every uvarint length (1 to 8 bytes), equal
// times, clocks stepped back, and requests another dimension refused; the
// outcomes, lengths and expiries must agree at every step.
func TestSlidingWindowMatchesModel(t *testing.T) {
	gaps := []int64{0, 1, 127, 128, 16_383, 16_384, 1 << 21, 1 << 28, 1 << 35, 1 << 42, 1 << 49}
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		l := Limit{Limit: 1 + rng.Int64N(300), WindowUS: []int64{1, 1000, sec, 3600 * sec, 1 << 50}[rng.IntN(5)]}
		var s SlidingWindowState
		var m slidingModel
		now := int64(1 << 50)
		for i := 0; i < 3000; i++ {
			switch r := rng.IntN(20); {
			case r == 0:
				now -= rng.Int64N(l.WindowUS + 1) // a clock stepped back
			case r < 4:
				now += gaps[rng.IntN(len(gaps))] >> 1
			default:
				now += rng.Int64N(min(l.WindowUS, 1<<20)/max(l.Limit, 1) + 2)
			}
			now = max(0, min(now, 1<<52))
			other := rng.IntN(8) == 0
			okS, okM := s.Check(l, now), m.check(l, now)
			got := s.Finish(l, now, okS, okS && !other)
			want := m.finish(l, now, okM, okM && !other)
			if got != want || s.Len() != len(m.log) {
				t.Fatalf("seed %d step %d at %d: got %+v len %d, want %+v len %d", seed, i, now, got, s.Len(), want, len(m.log))
			}
			if exp := s.ExpiresAtUS(l); len(m.log) > 0 && exp != m.log[len(m.log)-1]+l.WindowUS || len(m.log) == 0 && exp != 0 {
				t.Fatalf("seed %d step %d: expiry %d, model's newest %v", seed, i, exp, m.log)
			}
			if !slices.Equal(s.times(), m.log) && !(len(m.log) == 0 && s.times() == nil) {
				t.Fatalf("seed %d step %d: entries differ", seed, i)
			}
		}
	}
}

// TestSlidingWindowInsertIsLocal: an entry admitted just before the newest
// (a clock stepped back a little) costs what the entries after it cost, not
// a copy of the log: over a 100,000-entry log, such inserts allocate only
// when the buffer grows.
func TestSlidingWindowInsertIsLocal(t *testing.T) {
	l := Limit{Limit: 1_000_000, WindowUS: 3600 * sec}
	var s SlidingWindowState
	now := int64(1 << 40)
	for i := 0; i < 100_000; i++ {
		now += 2
		run(&s, l, step{atUS: now})
	}
	back := now
	allocs := testing.AllocsPerRun(1000, func() {
		back-- // before the newest entry: each one is an insert
		if out := run(&s, l, step{atUS: back}); !out.OK {
			t.Fatalf("refused at %d: %+v", back, out)
		}
	})
	if allocs > 0.05 {
		t.Fatalf("%.2f allocations per insert, want the buffer's growth only", allocs)
	}
	if got := s.times(); !slices.IsSorted(got) || len(got) != 100_000+1001 {
		t.Fatalf("%d entries, sorted %v", len(got), slices.IsSorted(got))
	}
}
