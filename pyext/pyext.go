// Package pyext is the Python-facing surface of the Go engine. gopy wraps
// every exported function into the CPython extension
// rate_limiter_go._goext.pyext; the Python side uses it only through
// rate_limiter_go.engine_go.
//
// The request path takes and returns scalars only: gopy leaks the C string of
// every string or error it returns, and structs cross through a slow handle
// table. A request's answer is packed into one int64 (see Evaluate and
// docs/engine.md). Every function recovers from panics: a Go panic must never
// take the host process down.
package pyext

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

// Error codes returned instead of a packed result (docs/engine.md).
const (
	CodeUnavailable   = -1 // backend unavailable: Redis error, timeout or breaker open
	CodeUnknownHandle = -2 // no limiter with this handle (closed or never created)
	CodeBadArgument   = -3 // malformed identity, time or ticket; nothing was evaluated
	CodeInternal      = -4 // a bug: a recovered panic or an unexpected error
)

// Result packing (docs/engine.md): bit 0 admitted, bits 1-3 dimension
// (limiter.Dimension: 0 user, 1 user_per_server, 2 tenant, 3 tool, 4 none),
// bits 4-24 remaining (admitted) or Retry-After seconds (blocked), bits 25-62
// X-RateLimit-Reset in Unix seconds.
const (
	dimShift   = 1
	valueShift = 4
	valueBits  = 21
	resetShift = 25
	resetBits  = 38
)

// ABIVersion identifies the shape of this package's API; engine_go checks it.
// 3: Evaluate and Submit take the server; the packed dimension has 3 bits.
// 4: Evaluate may get views of the caller's memory (the fast path of
// tools/build/fastpath): it reads its identities only during the call.
// 5: Submit answers at once when it needs no I/O; tickets are <= MaxTicket.
func ABIVersion() int64 { return 5 }

// Add returns a+b. The build's smoke test and the overhead benchmark call it.
func Add(a, b int64) int64 { return a + b }

// evaluator is what a handle refers to: a *limiter.Limiter (tests put in
// others).
type evaluator interface {
	Evaluate(ctx context.Context, r limiter.Request) (limiter.Decision, error)
	EvaluateLocal(r limiter.Request) (limiter.Decision, bool, error)
	Close()
}

// table maps handles to limiters. Handles count up from 1 and are never
// reused, so a stale handle cannot reach another engine's limiter. A read
// is one atomic load and an index (every request does one), cheaper than a
// concurrent map's lookup (callgrind,
// bench/results/issue13-core/instructions-s7.txt); adding and removing copy
// the slice under mu. The slice keeps a slot per handle ever created, nil
// once removed: 16 bytes per limiter a process creates, and plugins create
// one per instance.
type table struct {
	mu    sync.Mutex
	slots atomic.Pointer[[]evaluator] // slots[h-1] is handle h's limiter
}

var handles table

func (t *table) get(h int64) evaluator {
	if p := t.slots.Load(); p != nil && h >= 1 && h <= int64(len(*p)) {
		return (*p)[h-1]
	}
	return nil
}

func (t *table) add(l evaluator) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var old []evaluator
	if p := t.slots.Load(); p != nil {
		old = *p
	}
	next := append(make([]evaluator, 0, len(old)+1), old...)
	next = append(next, l)
	t.slots.Store(&next)
	return int64(len(next))
}

func (t *table) remove(h int64) evaluator {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.slots.Load()
	if p == nil || h < 1 || h > int64(len(*p)) || (*p)[h-1] == nil {
		return nil
	}
	next := slices.Clone(*p)
	l := next[h-1]
	next[h-1] = nil
	t.slots.Store(&next)
	return l
}

// NewLimiter parses configJSON (LimiterConfig.canonical_json()) and returns a
// handle >= 1 for Evaluate and Submit. Limiters with the same name and
// configuration share their state: one memory store, or one Redis pool.
// Called once per plugin instance: the error string it may return is leaked
// by gopy, which is acceptable there and nowhere else.
func NewLimiter(name string, configJSON string) (h int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = 0, fmt.Errorf("rate limiter: internal error creating the limiter: %v", r)
		}
	}()
	l, err := limiter.Open(name, configJSON)
	if err != nil {
		return 0, fmt.Errorf("rate limiter: %w", err)
	}
	return handles.add(l), nil
}

// CloseLimiter forgets a handle and releases its share of a Redis pool.
// Memory state survives (docs/semantics.md §10). Unknown handles are ignored.
func CloseLimiter(handle int64) {
	defer recoverTo(new(int64))
	if l := handles.remove(handle); l != nil {
		l.Close()
	}
}

// ResetMemoryStores forgets every shared memory store, so that tests start
// from empty state; limiters already created keep the store they have. Not
// for production use: it breaks the sharing of docs/semantics.md §10.
func ResetMemoryStores() {
	defer recoverTo(new(int64))
	limiter.ResetMemoryStores()
}

// Evaluate checks and, if admitted, consumes one request synchronously (gopy's
// wrapper releases the GIL meanwhile; the fast entry holds it on the memory
// backend, docs/engine.md). user is the normalised user; server "" means no
// virtual server (no user_per_server dimension); tenant "" means no tenant;
// tool "" means no tool. An identity starting with "\x01" is already escaped
// (docs/engine.md). nowUS is Unix µs, 0 for the backend's clock.
//
// The identities may be views of the caller's memory, valid only until
// Evaluate returns (the extension's evaluate_fast passes the UTF-8 buffers of
// the Python str objects without a copy): Evaluate and the limiter read them
// during the call and keep only copies (a memory store copies a segment when
// it creates its entry; Redis keys are built into the limiter's buffers).
//
// It returns a packed result >= 0 (docs/engine.md) or a negative Code*.
func Evaluate(handle int64, user, server, tenant, tool string, nowUS int64) (packed int64) {
	defer recoverTo(&packed)
	l := handles.get(handle)
	if l == nil {
		return CodeUnknownHandle
	}
	return evaluate(l, user, server, tenant, tool, nowUS)
}

// evaluate runs one request and packs the answer or the error code.
func evaluate(l evaluator, user, server, tenant, tool string, nowUS int64) int64 {
	d, err := l.Evaluate(context.Background(),
		limiter.Request{User: user, Server: server, Tenant: tenant, Tool: tool, NowUS: nowUS})
	if err != nil {
		return code(err)
	}
	return pack(d)
}

// code maps an engine error to its Code*.
func code(err error) int64 {
	switch limiter.Classify(err) {
	case limiter.BadArgument:
		return CodeBadArgument
	case limiter.Unavailable:
		return CodeUnavailable
	}
	return CodeInternal
}

// pack encodes a Decision into a non-negative int64 (docs/engine.md).
func pack(d limiter.Decision) int64 {
	var p int64
	v := d.Remaining
	if d.Admitted {
		p = 1
	} else {
		v = d.RetryAfterS
	}
	v = min(max(v, 0), 1<<valueBits-1)
	reset := min(max(d.ResetAtUnix, 0), 1<<resetBits-1)
	return p | int64(d.Dimension)<<dimShift | v<<valueShift | reset<<resetShift
}

// panics counts recovered panics, for tests and diagnostics.
var panics atomic.Int64

// reportPanic records a recovered panic and prints its stack to stderr: a
// bug must stay visible even though the process survives. The panic value
// is not printed, since it could quote request data; the stack shows
// arguments only as raw words.
func reportPanic(any) {
	panics.Add(1)
	fmt.Fprintln(os.Stderr, "rate_limiter_go: recovered a panic in the Go engine:")
	_, _ = os.Stderr.Write(debug.Stack()) // nothing left to report a failed write of stderr to
}

// recoverTo, deferred by an exported function, turns a panic into
// CodeInternal in *result.
func recoverTo(result *int64) {
	if r := recover(); r != nil {
		reportPanic(r)
		*result = CodeInternal
	}
}

// PanicCount returns how many panics were recovered since the process started.
func PanicCount() int64 { return panics.Load() }
