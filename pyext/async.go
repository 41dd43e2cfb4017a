package pyext

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/rate-limiter-go/rate_limiter_go/limiter"
)

// completions is the queue between Submit's goroutines and the Python event
// loop: finished tickets in order, their packed results, and an eventfd that
// counts completions so the loop can wait on it with add_reader.
type completions struct {
	next atomic.Int64 // how many tickets were handed out

	mu      sync.Mutex
	fd      int // eventfd, -1 until first needed
	done    []int64
	head    int
	results map[int64]int64
}

var queue = completions{fd: -1, results: map[int64]int64{}}

// eventFD returns the eventfd, creating it once (non-blocking, close-on-exec).
func (c *completions) eventFD() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return -1, fmt.Errorf("eventfd: %w", err)
		}
		c.fd = fd
	}
	return c.fd, nil
}

// complete records a ticket's result and, when it is the only queued
// completion, signals the eventfd. A reader that reads the eventfd and then
// pops until the queue is empty therefore sees every completion: one queued
// while the queue was not empty is popped by the drain already due for the
// earlier ones. Under load this is one eventfd write per drain, not one per
// completion.
func (c *completions) complete(ticket, packed int64) {
	c.mu.Lock()
	c.results[ticket] = packed
	c.done = append(c.done, ticket)
	first := len(c.done)-c.head == 1
	fd := c.fd
	c.mu.Unlock()
	if !first {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	// Non-blocking: the write fails only if the counter would overflow,
	// which needs 2^64 unread completions.
	_, _ = unix.Write(fd, one[:])
}

// pop returns the oldest completed ticket, or 0.
func (c *completions) pop() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.head == len(c.done) {
		return 0
	}
	t := c.done[c.head]
	c.head++
	switch {
	case c.head == len(c.done): // empty: reuse the slice from the start
		c.done, c.head = c.done[:0], 0
	case c.head >= 1024 && c.head > len(c.done)/2: // never empty under load: drop the consumed front
		n := copy(c.done, c.done[c.head:])
		c.done, c.head = c.done[:n], 0
	}
	return t
}

// take removes and returns a ticket's result.
func (c *completions) take(ticket int64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.results[ticket]
	if ok {
		delete(c.results, ticket)
	}
	return r, ok
}

// CompletionFD returns the eventfd that signals finished Submit calls: the
// Python side registers it with loop.add_reader. It is created on first use
// and stays open for the life of the process. Negative: CodeInternal.
func CompletionFD() (fd int64) {
	defer recoverTo(&fd)
	f, err := queue.eventFD()
	if err != nil {
		return CodeInternal
	}
	return int64(f)
}

// MaxTicket is the largest ticket: tickets count down from it, so that the
// one int64 Submit returns says what it is (a packed result >= 0, a Code*
// between MaxTicket and 0, or a ticket <= MaxTicket).
const MaxTicket = -16

// TicketBound returns MaxTicket, for the Python side, which reads it once
// instead of repeating the number.
func TicketBound() int64 { return MaxTicket }

// Submit answers one request (arguments as for Evaluate) without waiting.
// When the answer needs no I/O (no dimension applies, or a refusal the Redis
// backend remembers, docs/semantics.md §12) it returns the packed result (>=
// 0) at once. Otherwise it starts the evaluation in a goroutine and returns a
// ticket <= MaxTicket; when the evaluation ends, its ticket is queued for
// NextCompletion, and the eventfd is incremented by one if the queue was
// empty: read the eventfd, then call NextCompletion until it returns 0. A
// negative Code* above MaxTicket is an error (a malformed identity or time
// is reported here, before any goroutine). The identities may be views of
// the caller's memory valid only during the call, as for Evaluate: the
// goroutine gets copies.
func Submit(handle int64, user, server, tenant, tool string, nowUS int64) (result int64) {
	defer recoverTo(&result)
	l := handles.get(handle)
	if l == nil {
		return CodeUnknownHandle
	}
	r := limiter.Request{User: user, Server: server, Tenant: tenant, Tool: tool, NowUS: nowUS}
	d, answered, err := l.EvaluateLocal(r)
	if err != nil {
		return code(err)
	}
	if answered {
		return pack(d)
	}
	if _, err := queue.eventFD(); err != nil {
		return CodeInternal
	}
	// The identities may be views of the caller's memory (submit_fast), and
	// the goroutine outlives this call.
	user, server, tenant, tool = detach(user, server, tenant, tool)
	t := MaxTicket + 1 - queue.next.Add(1)
	go func() {
		packed := int64(CodeInternal)
		defer func() {
			if r := recover(); r != nil {
				reportPanic(r)
				packed = CodeInternal
			}
			queue.complete(t, packed)
		}()
		packed = evaluate(l, user, server, tenant, tool, nowUS)
	}()
	return t
}

// NextCompletion returns the oldest finished ticket (<= MaxTicket) not yet
// returned, or 0 when there is none.
func NextCompletion() int64 {
	return queue.pop()
}

// TakeResult returns a finished ticket's packed result (or its negative
// Code*) and forgets it; CodeBadArgument for a ticket that is not finished or
// was already taken.
func TakeResult(ticket int64) int64 {
	r, ok := queue.take(ticket)
	if !ok {
		return CodeBadArgument
	}
	return r
}

// detach returns copies of the four identities that share no memory with
// them, in one allocation.
func detach(user, server, tenant, tool string) (string, string, string, string) {
	var b strings.Builder
	b.Grow(len(user) + len(server) + len(tenant) + len(tool))
	for _, s := range [...]string{user, server, tenant, tool} {
		b.WriteString(s)
	}
	all := b.String()
	u, rest := all[:len(user)], all[len(user):]
	s, rest := rest[:len(server)], rest[len(server):]
	return u, s, rest[:len(tenant)], rest[len(tenant):]
}
