package algorithms

import "sort"

// SlidingWindowState is one key's exact sliding log (docs/semantics.md §3.2):
// the admission times, in Unix µs, of the requests that still count, in
// ascending order. The zero value is an empty log.
//
// The log holds at most Limit entries; its buffer grows on demand and shrinks
// when mostly empty, so an idle key does not keep a large allocation.
type SlidingWindowState struct {
	buf  []int64 // entries are buf[head : head+n], ascending
	head int
	n    int
}

// Len returns the number of entries held (counting or not yet dropped).
func (s *SlidingWindowState) Len() int { return s.n }

// drop removes the entries that no longer count at nowUS: an entry admitted at
// t counts while t > nowUS - WindowUS. This is housekeeping, not consumption,
// and is done on every evaluation, as the Redis script does.
func (s *SlidingWindowState) drop(l Limit, nowUS int64) {
	cut := nowUS - l.WindowUS
	for s.n > 0 && s.buf[s.head] <= cut {
		s.head++
		s.n--
	}
	if s.n == 0 {
		s.head = 0
	}
	// Release a buffer that is mostly empty (a burst long gone).
	if c := cap(s.buf); c > 64 && s.n < c/8 {
		nb := make([]int64, max(2*s.n, 16))
		copy(nb, s.buf[s.head:s.head+s.n])
		s.buf, s.head = nb, 0
	}
}

// Check drops the entries that stopped counting at nowUS (Unix µs) and
// reports whether the key would admit one more request.
func (s *SlidingWindowState) Check(l Limit, nowUS int64) bool {
	// drop only when it has work: an entry that stopped counting, or a
	// buffer to shrink (with no entries, head is 0 already). The test is
	// small enough to inline; drop is not.
	if s.n > 0 && s.buf[s.head] <= nowUS-l.WindowUS || cap(s.buf) > 64 && s.n < cap(s.buf)/8 {
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
		// The common case, a time not before the newest entry with room
		// after it, is an append; insert does the rest.
		if end := s.head + s.n; end < len(s.buf) && (s.n == 0 || nowUS >= s.buf[end-1]) {
			s.buf[end] = nowUS
			s.n++
		} else {
			s.insert(nowUS)
		}
	}
	reset := nowUS + l.WindowUS
	if s.n > 0 {
		reset = s.buf[s.head] + l.WindowUS
	}
	out := Outcome{OK: ok, Remaining: max(0, l.Limit-int64(s.n)), ResetAtUS: reset}
	if !admitted && !ok {
		out.RetryAfterUS = reset - nowUS
	}
	return out
}

// insert adds t keeping the log ascending. Time normally moves forward, so
// this is an append; an earlier t (a clock stepped back) is placed in order.
func (s *SlidingWindowState) insert(t int64) {
	if s.head+s.n == len(s.buf) {
		if s.head > 0 && s.n < len(s.buf)/2 {
			copy(s.buf, s.buf[s.head:s.head+s.n])
		} else {
			nb := make([]int64, max(2*len(s.buf), 4))
			copy(nb, s.buf[s.head:s.head+s.n])
			s.buf = nb
		}
		s.head = 0
	}
	live := s.buf[s.head : s.head+s.n+1]
	i := s.n
	if s.n > 0 && t < live[s.n-1] {
		i = sort.Search(s.n, func(j int) bool { return live[j] > t })
		copy(live[i+1:], live[i:s.n])
	}
	live[i] = t
	s.n++
}

// ExpiresAtUS returns the Unix µs from which no entry counts any more and the
// state may be dropped: the newest entry plus the window (0 when empty).
func (s *SlidingWindowState) ExpiresAtUS(l Limit) int64 {
	if s.n == 0 {
		return 0
	}
	return s.buf[s.head+s.n-1] + l.WindowUS
}
