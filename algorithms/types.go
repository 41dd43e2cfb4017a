// Package algorithms holds the three rate limiting algorithms of
// docs/semantics.md §3 as small state machines over integer microseconds,
// independent of where their state is stored.
package algorithms

import "fmt"

// Kind names an algorithm.
type Kind uint8

// The algorithms of docs/semantics.md §3.
const (
	FixedWindow   Kind = iota // §3.1
	SlidingWindow             // §3.2, exact log
	TokenBucket               // §3.3, continuous refill
)

// String returns the configuration name of the algorithm, e.g. "fixed_window".
func (k Kind) String() string {
	switch k {
	case FixedWindow:
		return "fixed_window"
	case SlidingWindow:
		return "sliding_window"
	case TokenBucket:
		return "token_bucket"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind maps a configuration name to its Kind.
func ParseKind(name string) (Kind, error) {
	switch name {
	case "fixed_window":
		return FixedWindow, nil
	case "sliding_window":
		return SlidingWindow, nil
	case "token_bucket":
		return TokenBucket, nil
	}
	return 0, fmt.Errorf("unknown algorithm %q (want fixed_window, sliding_window or token_bucket)", name)
}

// Limit is one dimension's rate: Limit requests per WindowUS microseconds.
type Limit struct {
	Limit    int64 // requests per window, 1..1,000,000
	WindowUS int64 // window length in microseconds
}

// Outcome is one dimension's answer for one request (docs/semantics.md §3, §9).
type Outcome struct {
	OK           bool  // this dimension alone would admit the request
	Remaining    int64 // requests left after this request
	ResetAtUS    int64 // Unix time in µs, meaning per algorithm (§3)
	RetryAfterUS int64 // µs until a retry can succeed; 0 unless OK is false and the request was blocked
}

// State is one key's state of one algorithm: FixedWindowState,
// SlidingWindowState or TokenBucketState (pointer receivers). A backend
// evaluates a request's keys in two phases: Check on every key, then Finish
// on every key with the verdict over all of them (§4).
type State interface {
	// Check reports whether the key would admit one more request at nowUS
	// (Unix µs); it changes nothing that counts.
	Check(l Limit, nowUS int64) bool
	// Finish completes the request at nowUS: if admitted it consumes, else
	// it writes nothing. ok is this key's own Check result.
	Finish(l Limit, nowUS int64, ok, admitted bool) Outcome
	// ExpiresAtUS returns the Unix µs from which the state counts as empty.
	ExpiresAtUS(l Limit) int64
}

// Compile-time checks that the three states implement State.
var (
	_ State = (*FixedWindowState)(nil)
	_ State = (*SlidingWindowState)(nil)
	_ State = (*TokenBucketState)(nil)
)
