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
	n        int32  // entries held; at most Limit, whose bound (§2) fits an int32
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
// It walks back from the newest entry over the gaps (a uvarint's last byte
// is the only one below 0x80, so they can be read backwards) to the last
// entry not after t, and splits that entry's gap to the next in two: the
// cost grows with the entries after t, as an array's insert would.
func (s *SlidingWindowState) insert(t int64) {
	head := int(s.head)
	cur, i := s.newestUS, len(s.deltas) // cur's gap ends at deltas[i]
	for i > head {
		k := i - 1
		for k > head && s.deltas[k-1] >= 0x80 {
			k--
		}
		g, _ := binary.Uvarint(s.deltas[k:i])
		prev := cur - int64(g) // #nosec G115 -- a gap between two times below 2^52
		if prev <= t {
			// prev, t, cur: the gap prev..cur becomes prev..t and t..cur.
			var two [2 * binary.MaxVarintLen64]byte
			enc := binary.AppendUvarint(binary.AppendUvarint(two[:0], uint64(t-prev)), uint64(cur-t)) // #nosec G115 -- prev <= t < cur
			s.deltas = slices.Replace(s.deltas, k, i, enc...)
			s.n++
			return
		}
		cur, i = prev, k
	}
	// Before the oldest entry: t becomes the oldest, and the old oldest's
	// gap from it is the first gap.
	var one [binary.MaxVarintLen64]byte
	enc := binary.AppendUvarint(one[:0], uint64(s.oldestUS-t)) // #nosec G115 -- t < oldestUS
	if len(enc) <= head {                                      // room in the dropped prefix
		head -= len(enc)
		copy(s.deltas[head:], enc)
		s.head = int32(head) // #nosec G115 -- below the old head
	} else {
		s.deltas = slices.Insert(s.deltas, head, enc...)
	}
	s.oldestUS = t
	s.n++
}

// ExpiresAtUS returns the Unix µs from which no entry counts any more and the
// state may be dropped: the newest entry plus the window (0 when empty).
func (s *SlidingWindowState) ExpiresAtUS(l Limit) int64 {
	if s.n == 0 {
		return 0
	}
	return s.newestUS + l.WindowUS
}
