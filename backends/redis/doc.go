// Package redis is the Redis backend of the Go engine: it evaluates every
// dimension of one request with a single EVALSHA of the shared Lua scripts
// (docs/semantics.md §9), behind dial/command timeouts and a circuit breaker
// (§8), and reports every failure as an error wrapping ErrUnavailable.
//
// Error texts never contain keys, arguments or server error messages: keys
// carry user and tenant identities, so failures are reduced to an operation
// and an error class ("evalsha: timeout", "evalsha: server error WRONGTYPE").
//
// See docs/redis-backend.md for the design and the supported URL forms.
package redis
