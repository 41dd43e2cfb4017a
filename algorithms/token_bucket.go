package algorithms

// TokenBucketState is one key's token bucket (docs/semantics.md §3.3). Tokens
// are held scaled by the window length in µs so that refill is exact integer
// arithmetic: one token is WindowUS scaled units and the bucket refills Limit
// units per µs. The zero value is a full bucket (missing state).
type TokenBucketState struct {
	Scaled    int64 // tokens * WindowUS at UpdatedUS
	UpdatedUS int64 // Unix µs of the last consumption
	Set       bool  // false: no state yet, the bucket is full
}

// level returns the scaled tokens available at nowUS, refilled from the stored
// state without changing it.
func (s *TokenBucketState) level(l Limit, nowUS int64) int64 {
	capacity := l.Limit * l.WindowUS
	if !s.Set {
		return capacity
	}
	// Refilling for a whole window fills any bucket; clamping also keeps the
	// product far below 2^63 whatever the gap.
	elapsed := min(max(nowUS-s.UpdatedUS, 0), l.WindowUS)
	return min(capacity, s.Scaled+elapsed*l.Limit)
}

// Check reports whether the bucket holds at least one whole token at nowUS
// (Unix µs). It changes nothing.
func (s *TokenBucketState) Check(l Limit, nowUS int64) bool {
	return s.level(l, nowUS) >= l.WindowUS
}

// Finish completes one request at nowUS: if admitted (the verdict over every
// dimension, §4) it takes one token, else it writes nothing, since the refill
// is recomputed exactly from the stored state next time. ok is this key's
// own Check result. It returns the key's Outcome.
func (s *TokenBucketState) Finish(l Limit, nowUS int64, ok, admitted bool) Outcome {
	capacity := l.Limit * l.WindowUS
	scaled := s.level(l, nowUS)
	if admitted {
		scaled -= l.WindowUS
		s.Scaled, s.UpdatedUS, s.Set = scaled, nowUS, true
	}
	out := Outcome{
		OK:        ok,
		Remaining: scaled / l.WindowUS,
		ResetAtUS: nowUS + CeilDiv(capacity-scaled, l.Limit),
	}
	if !admitted && !ok {
		out.RetryAfterUS = CeilDiv(l.WindowUS-scaled, l.Limit)
	}
	return out
}

// ExpiresAtUS returns the Unix µs from which the stored state equals a full
// bucket and may be dropped (0 when there is no state).
func (s *TokenBucketState) ExpiresAtUS(l Limit) int64 {
	if !s.Set {
		return 0
	}
	return s.UpdatedUS + CeilDiv(l.Limit*l.WindowUS-s.Scaled, l.Limit)
}
