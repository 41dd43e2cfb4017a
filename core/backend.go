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
