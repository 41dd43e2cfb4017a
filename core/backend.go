package core

import (
	"context"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// Backend evaluates one request's dimensions all-or-nothing (docs/semantics.md §4)
// with the one algorithm it was made for.
type Backend interface {
	// Evaluate checks keys[i] against limits[i] at nowUS (Unix µs; 0: the backend's clock),
	// writes one Outcome per key into out[:len(keys)] and reports whether the request was admitted.
	Evaluate(ctx context.Context, keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (admitted bool, err error)
	// Algorithm returns the algorithm the backend evaluates.
	Algorithm() algorithms.Kind
	Close() error
}

// KeyBorrower is implemented by backends that never keep a key passed to
// Evaluate after it returns (they copy the keys they store). The engine then
// passes views of a reused buffer instead of allocating a string per key.
type KeyBorrower interface {
	// BorrowsKeys reports whether keys may be views valid only during Evaluate.
	BorrowsKeys() bool
}

// SegmentedBackend is implemented by backends that can hold a key as the id
// of its configuration-fixed prefix and the rest, its segment, so that the
// engine does not compose a key string per dimension per request (the memory
// store). Which segment stands for which key is the engine's business: it
// gives every key one (prefix, segment) pair, distinct keys distinct pairs.
type SegmentedBackend interface {
	Backend
	// KeySpace returns the backend's id of a key prefix: equal prefixes get
	// equal ids for the backend's lifetime.
	KeySpace(prefix string) uint32
	// EvaluateSegments is Evaluate of the keys with prefix id spaces[i] and
	// segment segments[i]; the segments may be views valid only during the
	// call.
	EvaluateSegments(ctx context.Context, spaces []uint32, segments []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (admitted bool, err error)
}

// TrustingBackend is a SegmentedBackend with an entry that skips checking
// the shape of a request, for the engine, which builds every request in that
// shape: checking it again was a visible share of the memory store's work
// for a hot key (bench/results/issue13-core/instructions-s7.txt).
type TrustingBackend interface {
	SegmentedBackend
	// EvaluateSegmentsTrusted is EvaluateSegments (no context: it does no
	// I/O, no error: it checks nothing) for arguments that pass its checks:
	// 1 to MaxDimensions keys with as many limits and at least as many
	// outcomes, every limit and window at least 1, nowUS 0 (the backend's
	// clock) to MaxNowUS, and no two keys alike. Arguments outside these give
	// undefined results.
	EvaluateSegmentsTrusted(spaces []uint32, segments []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) (admitted bool)
}

// LocalAnswerer is implemented by backends that can answer some requests
// from what they hold in process, without any I/O (the Redis backend's
// remembered refusals, docs/semantics.md §12). The engine asks it first so
// that such an answer does not wait for a goroutine or a round trip.
type LocalAnswerer interface {
	// AnswerLocally is Evaluate for a request it can answer without I/O: it
	// writes out[:len(keys)] as Evaluate would and returns true (the request
	// is then refused and nothing was consumed), or returns false, writing
	// nothing, when the request needs Evaluate.
	AnswerLocally(keys []string, limits []algorithms.Limit, nowUS int64, out []algorithms.Outcome) bool
}
