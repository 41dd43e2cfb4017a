package algorithms

import (
	"encoding/binary"
	"slices"
)

// SlidingWindowState is one key's exact sliding log (docs/semantics.md §3.2):
// the admission times, in Unix µs, of the requests that still count, in
// ascending order. The zero value is an empty log.
//
// The oldest and newest entries are held as they are; every entry after the
// oldest is held as its gap from the one before, a uvarint in deltas. A
// busy key's gaps are small: at one request per µs to 127 µs an entry
// takes one byte, to 16 ms two, to 2 s three (never more than the 8 bytes
// of a plain timestamp, since times are below 2^52). So a key near a large
// limit holds and moves up to 8 times fewer bytes than a log of int64, and
// its working set stays in the CPU's caches longer.
//
// The log holds at most Limit entries; its buffer grows on demand and shrinks
// when mostly empty, so an idle key does not keep a large allocation.
type SlidingWindowState struct {
	deltas   []byte // the gaps of entries 2..n, from deltas[head] to the end
	head     int32  // offset in deltas of the second entry's gap
	n        int32  // entries held; at most Limit (1,000,000, §2)
	oldestUS int64  // the oldest entry, when n > 0
	newestUS int64  // the newest entry, when n > 0
}

// Len returns the number of entries held (counting or not yet dropped).
func (s *SlidingWindowState) Len() int { return int(s.n) }

// drop removes the entries that no longer count at nowUS: an entry admitted at
// t counts while t > nowUS - WindowUS. This is housekeeping, not consumption,
// and is done on every evaluation, as the Redis script does.
func (s *SlidingWindowState) drop(l Limit, nowUS int64) {
	cut := nowUS - l.WindowUS
	for s.n > 0 && s.oldestUS <= cut {
		s.n--
		if s.n == 0 {
			break
		}
		// The next entry becomes the oldest: one byte in the common case.
		if g := s.deltas[s.head]; g < 0x80 {
			s.oldestUS += int64(g)
			s.head++
		} else {
			g, w := binary.Uvarint(s.deltas[s.head:])
			s.oldestUS += int64(g) // #nosec G115 -- a gap between two times below 2^52
			s.head += int32(w)     // #nosec G115 -- at most binary.MaxVarintLen64
		}
	}
	if s.n == 0 {
		s.deltas, s.head = s.deltas[:0], 0
	}
	// Release a buffer that is mostly empty (a burst long gone).
	if live := len(s.deltas) - int(s.head); cap(s.deltas) > 64 && live < cap(s.deltas)/8 {
		nb := make([]byte, live, max(2*live, 16))
		copy(nb, s.deltas[s.head:])
		s.deltas, s.head = nb, 0
	}
}

// Check drops the entries that stopped counting at nowUS (Unix µs) and
// reports whether the key would admit one more request.
func (s *SlidingWindowState) Check(l Limit, nowUS int64) bool {
	// drop only when it has work. A buffer to shrink needs no test here:
	// only drop makes one mostly empty, and it shrinks it then.
	if s.n > 0 && s.oldestUS <= nowUS-l.WindowUS {
		s.drop(l, nowUS)
	}
	return int64(s.n) < l.Limit
}

// Finish completes one request at nowUS, after Check at the same nowUS: if
// admitted (the verdict over every dimension, §4) it appends nowUS to the log,
// else it appends nothing. ok is this key's own Check result. It returns the
// key's Outcome.
func (s *SlidingWindowState) Finish(l Limit, nowUS int64, ok, admitted bool) Outcome {
	if admitted {
		switch {
		case s.n == 0:
			s.oldestUS, s.newestUS, s.n = nowUS, nowUS, 1
		case nowUS >= s.newestUS:
			s.appendGap(uint64(nowUS - s.newestUS)) // #nosec G115 -- not negative in this case
			s.newestUS = nowUS
			s.n++
		default:
			s.insert(nowUS)
		}
	}
	reset := nowUS + l.WindowUS
	if s.n > 0 {
		reset = s.oldestUS + l.WindowUS
	}
	out := Outcome{OK: ok, Remaining: max(0, l.Limit-int64(s.n)), ResetAtUS: reset}
	if !admitted && !ok {
		out.RetryAfterUS = reset - nowUS
	}
	return out
}

// appendGap appends the gap of a new newest entry. A buffer with no room
// left is first compacted when its dropped prefix is at least half of it,
// else it grows (append's rule).
func (s *SlidingWindowState) appendGap(g uint64) {
	if len(s.deltas)+binary.MaxVarintLen64 > cap(s.deltas) && int(s.head) >= cap(s.deltas)/2 {
		live := copy(s.deltas, s.deltas[s.head:])
		s.deltas, s.head = s.deltas[:live], 0
	}
	if g < 0x80 {
		s.deltas = append(s.deltas, byte(g))
	} else {
		s.deltas = binary.AppendUvarint(s.deltas, g)
	}
}

// insert adds t before the newest entry, keeping the log ascending: time
// normally moves forward, so this happens only when a clock stepped back.
// It rebuilds the log, which costs its length; the log is never longer
// than Limit.
func (s *SlidingWindowState) insert(t int64) {
	times := s.times()
	i, _ := slices.BinarySearch(times, t)
	times = slices.Insert(times, i, t)
	s.oldestUS, s.newestUS, s.n = times[0], times[0], 1
	s.deltas, s.head = s.deltas[:0], 0 // times holds a copy
	for _, u := range times[1:] {
		s.appendGap(uint64(u - s.newestUS)) // #nosec G115 -- times is ascending
		s.newestUS = u
		s.n++
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
// state may be dropped: the newest entry plus the window (0 when empty).
func (s *SlidingWindowState) ExpiresAtUS(l Limit) int64 {
	if s.n == 0 {
		return 0
	}
	return s.newestUS + l.WindowUS
}
