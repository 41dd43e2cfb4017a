package redis

import (
	"sync/atomic"
	"time"
)

// breaker is the circuit breaker of docs/semantics.md §8, built on atomics so
// the closed-state check on the hot path is two atomic loads.
//
// States: closed (openUntil == 0) counts consecutive failures; at threshold
// it opens until now+cooldown and every call fails fast. After the cooldown
// exactly one call (the probe) is let through: success closes the breaker,
// failure re-opens it for another cooldown.
type breaker struct {
	threshold int64
	cooldown  int64        // nanoseconds
	now       func() int64 // monotonic clock, nanoseconds; injectable for tests

	failures  atomic.Int64 // consecutive failures while closed
	openUntil atomic.Int64 // 0 while closed, else the clock value at which a probe may go
	probing   atomic.Bool  // a probe is in flight
}

// callResult is what a finished call reports to the breaker.
type callResult uint8

const (
	resultSuccess callResult = iota // Redis answered well-formed
	resultFailure                   // Redis failed, timed out or answered malformed
	resultNeutral                   // says nothing about Redis (the caller canceled)
)

// breakerState names the breaker's state for tests and docs.
type breakerState uint8

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen // cooldown over: the next allow() becomes the probe, or a probe is in flight
)

func (s breakerState) String() string {
	switch s {
	case stateClosed:
		return "closed"
	case stateOpen:
		return "open"
	case stateHalfOpen:
		return "half-open"
	}
	return "invalid"
}

// newBreaker returns a closed breaker. now must be monotonic and must not
// return negative values; nil means the process's monotonic clock.
func newBreaker(threshold int, cooldown time.Duration, now func() int64) *breaker {
	if now == nil {
		start := time.Now()
		now = func() int64 { return int64(time.Since(start)) }
	}
	return &breaker{threshold: int64(threshold), cooldown: int64(cooldown), now: now}
}

// allow reports whether a call may go to Redis and whether it is the probe.
// A caller given ok must report exactly once with done(probe, result).
func (b *breaker) allow() (ok, probe bool) {
	until := b.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if b.now() < until {
		return false, false
	}
	if b.probing.CompareAndSwap(false, true) {
		return true, true
	}
	return false, false
}

// done records the result of a call that allow let through.
func (b *breaker) done(probe bool, r callResult) {
	switch r {
	case resultSuccess:
		// Avoid writing shared cache lines on the common path.
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.openUntil.Load() != 0 {
			b.openUntil.Store(0)
			b.probing.Store(false)
		}
	case resultFailure:
		if probe {
			b.openUntil.Store(b.openDeadline())
			b.probing.Store(false)
			return
		}
		if b.failures.Add(1) >= b.threshold {
			// Only the transition from closed arms the timer: late failures
			// of calls that started before the breaker opened do not extend it.
			if b.openUntil.CompareAndSwap(0, b.openDeadline()) {
				b.failures.Store(0)
			}
		}
	case resultNeutral:
		if probe {
			// The probe told us nothing: let the next call probe instead.
			b.probing.Store(false)
		}
	}
}

// openDeadline is the clock value at which a just-opened breaker lets a
// probe through; never 0, which means closed.
func (b *breaker) openDeadline() int64 {
	d := b.now() + b.cooldown
	if d == 0 {
		d = 1
	}
	return d
}

// state reports the current state (for tests; racy by nature).
func (b *breaker) state() breakerState {
	until := b.openUntil.Load()
	switch {
	case until == 0:
		return stateClosed
	case b.probing.Load() || b.now() >= until:
		return stateHalfOpen
	}
	return stateOpen
}
