package algorithms

// TokenBucketState is one key's token bucket (docs/semantics.md §3.3). Tokens
// are held scaled by the window length in µs so that refill is exact integer
// arithmetic: one token is WindowUS scaled units and the bucket refills Limit
// units per µs. The zero value is a full bucket (missing state).
type TokenBucketState struct {
	Scaled    int64 // tokens * WindowUS at UpdatedUS
	UpdatedUS int64 // Unix µs of the last consumption
	// FullAtUS is the Unix µs at which the bucket is full again, computed
	// with the last consumption (it is also that request's reset, and the
	// state's expiry: one division per admission instead of two); 0 when
	// there is no state. A consumption leaves the bucket at least one token
	// short, so a set state's FullAtUS is after its UpdatedUS, never 0.
	FullAtUS int64
}

// level returns the scaled tokens available at nowUS, refilled from the stored
// state without changing it.
func (s *TokenBucketState) level(l Limit, nowUS int64) int64 {
	capacity := l.Limit * l.WindowUS
	if s.FullAtUS == 0 {
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
		s.Scaled, s.UpdatedUS = scaled, nowUS
		s.FullAtUS = nowUS + CeilDiv(capacity-scaled, l.Limit)
	}
	out := Outcome{OK: ok, Remaining: scaled / l.WindowUS}
	if admitted {
		out.ResetAtUS = s.FullAtUS
	} else {
		out.ResetAtUS = nowUS + CeilDiv(capacity-scaled, l.Limit)
		if !ok {
			out.RetryAfterUS = CeilDiv(l.WindowUS-scaled, l.Limit)
		}
	}
	return out
}

// ExpiresAtUS returns the Unix µs from which the stored state equals a full
// bucket and may be dropped (0 when there is no state), under the Limit of
// its last consumption: a state is used with the one Limit its key names.
func (s *TokenBucketState) ExpiresAtUS(Limit) int64 {
	return s.FullAtUS
}
