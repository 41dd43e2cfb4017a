package memory

import "github.com/rate-limiter-go/rate_limiter_go/algorithms"

// EvaluateSegmentsTrusted is EvaluateSegments without its checks of the
// arguments (core.TrustingBackend): the engine builds every request in the
// shape those checks enforce, and checking it again on every request was a
// visible share of a hot key's work. nowUS 0 reads the store's
// clock. Arguments that EvaluateSegments would refuse give undefined results.
func (s *Store) EvaluateSegmentsTrusted(spaces []uint32, segments []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool {
	if nowUS == 0 {
		nowUS = s.now()
	}
	return s.impl.evaluate(spaces, segments, limits, nowUS, out)
}
