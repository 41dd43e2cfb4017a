// Package pyext is the Python-facing surface of the Go engine. gopy wraps
// every exported identifier of this package into the CPython extension
// rate_limiter_go._goext.pyext.
//
// Placeholder: another engineer replaces this with the real surface.
// Keep to int64/bool/float64 parameters and results where possible:
// gopy leaks the C string of every string or error return.
package pyext

// ABIVersion identifies the shape of this package's API.
func ABIVersion() int64 { return 1 }

// Add returns a+b. Used to measure per-call overhead.
func Add(a, b int64) int64 { return a + b }
