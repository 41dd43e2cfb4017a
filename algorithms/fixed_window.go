package algorithms

// FixedWindowState is one key's fixed window state (docs/semantics.md §3.1):
// the start of the window it counts, in Unix µs, and the requests admitted in
// it. The zero value is an empty key. A state is used with one Limit, the one
// its key names.
type FixedWindowState struct {
	StartUS int64 // start of the counted window, Unix µs
	Count   int64 // requests admitted in that window
}

// count returns the requests admitted in the epoch-aligned window that
// contains nowUS, and that window's start: state from another window counts
// as an empty window.
func (s *FixedWindowState) count(l Limit, nowUS int64) (count, startUS int64) {
	// A time inside the stored window needs no division: the stored start is
	// aligned to l.WindowUS, since a state is used with the one Limit its
	// key names (and the zero state starts at 0).
	if d := nowUS - s.StartUS; d >= 0 && d < l.WindowUS {
		return s.Count, s.StartUS
	}
	startUS = nowUS - nowUS%l.WindowUS
	if s.StartUS != startUS {
		return 0, startUS
	}
	return s.Count, startUS
}

// Check reports whether the key would admit one more request at nowUS
// (Unix µs, >= 0). It changes nothing.
func (s *FixedWindowState) Check(l Limit, nowUS int64) bool {
	c, _ := s.count(l, nowUS)
	return c < l.Limit
}

// Finish completes one request at nowUS: if admitted (the verdict over every
// dimension, §4) it counts the request, else it writes nothing. ok is this
// key's own Check result. It returns the key's Outcome.
func (s *FixedWindowState) Finish(l Limit, nowUS int64, ok, admitted bool) Outcome {
	c, start := s.count(l, nowUS)
	end := start + l.WindowUS
	if admitted {
		c++
		s.StartUS, s.Count = start, c
	}
	out := Outcome{OK: ok, Remaining: max(0, l.Limit-c), ResetAtUS: end}
	if !admitted && !ok {
		out.RetryAfterUS = end - nowUS
	}
	return out
}

// ExpiresAtUS returns the Unix µs from which the stored state counts as
// empty and may be dropped: the end of its window.
func (s *FixedWindowState) ExpiresAtUS(l Limit) int64 {
	return s.StartUS + l.WindowUS
}
