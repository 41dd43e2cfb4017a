// Package core is the Go engine's request path: it parses the configuration
// handed over by the Python side, builds the state keys of every dimension
// that applies to a request (docs/semantics.md §5, §6), asks a Backend for an
// all-or-nothing verdict (§4) and turns the reported dimension into header
// values (§7).
package core

import "errors"

// ErrBadArgument marks input the engine refuses: a malformed identity, a
// negative time or a missing user. Nothing is evaluated or written.
var ErrBadArgument = errors.New("bad argument")

// ErrBackend marks a failure of the backend (Redis unreachable, timed out,
// breaker open): the caller applies fail_mode (§8).
var ErrBackend = errors.New("backend unavailable")

// ErrConfig marks an invalid configuration.
var ErrConfig = errors.New("invalid configuration")
