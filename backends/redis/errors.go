package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	goredis "github.com/redis/go-redis/v9"
)

// ErrUnavailable is wrapped by every error that means "Redis could not answer
// this request": connection failures, timeouts, server error replies,
// malformed replies, an open circuit breaker and a closed Backend. Callers
// apply the configured fail mode (docs/semantics.md §8) when
// errors.Is(err, ErrUnavailable).
var ErrUnavailable = errors.New("redis backend unavailable")

// ErrBreakerOpen is returned without any network traffic while the circuit
// breaker is open. It wraps ErrUnavailable.
var ErrBreakerOpen error = &backendError{op: "evaluate", kind: "circuit breaker open"}

// ErrClosed is returned by Evaluate after Close. It wraps ErrUnavailable.
var ErrClosed error = &backendError{op: "evaluate", kind: "backend closed"}

// ErrInvalidRequest is wrapped by errors about arguments the caller should
// never have passed (wrong lengths, an unknown kind, a limit out of range).
// Such requests are refused before any network traffic and do not count as
// Redis failures for the breaker. It does not wrap ErrUnavailable.
var ErrInvalidRequest = errors.New("redis backend: invalid request")

// backendError is a sanitised failure: an operation and an error class, never
// the underlying text, which may echo keys (user and tenant identities) or
// script arguments.
type backendError struct {
	op       string // the Redis operation: "evalsha", "script load", "evaluate"
	kind     string // the error class, e.g. "timeout", "server error WRONGTYPE"
	canceled bool   // the caller's context was canceled
}

func (e *backendError) Error() string {
	return "redis backend unavailable: " + e.op + ": " + e.kind
}

// Unwrap exposes ErrUnavailable, plus context.Canceled for a caller's
// cancellation; the raw go-redis error is deliberately not reachable.
func (e *backendError) Unwrap() []error {
	if e.canceled {
		return []error{ErrUnavailable, context.Canceled}
	}
	return []error{ErrUnavailable}
}

// invalid builds an ErrInvalidRequest error. Messages name argument
// positions, never key contents.
func invalid(msg string) error {
	return &invalidError{msg: msg}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "redis backend: invalid request: " + e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalidRequest }

// invalidAt builds an ErrInvalidRequest error about dimension i (0-based).
func invalidAt(i int, msg string) error {
	return invalid("dimension " + strconv.Itoa(i) + ": " + msg)
}

// malformed is the error for a reply that does not have the shape of §9.
func malformed(what string) error {
	return &backendError{op: "evalsha", kind: "malformed reply: " + what}
}

// sanitize turns a go-redis or network error into a backendError naming only
// the operation and an error class.
func sanitize(op string, err error) *backendError {
	e := &backendError{op: op, kind: classify(err)}
	e.canceled = errors.Is(err, context.Canceled)
	return e
}

// classify names the class of err without repeating its text.
func classify(err error) string {
	var rerr goredis.Error
	var netErr net.Error
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var numErr *strconv.NumError
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, goredis.ErrClosed):
		return "client closed"
	case errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrPoolExhausted):
		return "connection pool exhausted"
	case errors.As(err, &rerr):
		if p := serverErrorPrefix(rerr.Error()); p != "" {
			return "server error " + p
		}
		return "server error"
	case errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &certErr),
		errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &certInvalid):
		return "tls error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "socket not found"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "connection lost"
	case errors.As(err, &netErr):
		return "network error"
	case errors.As(err, &numErr), strings.HasPrefix(err.Error(), "redis: can't parse"):
		// go-redis could not read the reply as an array of integers.
		return "malformed reply"
	}
	return "unexpected error"
}

// serverErrorPrefix returns the leading upper-case error code of a Redis
// error reply ("WRONGTYPE", "NOSCRIPT", "ERR"), or "" if there is none. The
// rest of the message is dropped: script errors can quote arguments.
func serverErrorPrefix(msg string) string {
	end := strings.IndexByte(msg, ' ')
	if end < 0 {
		end = len(msg)
	}
	if end == 0 || end > 32 {
		return ""
	}
	for i := 0; i < end; i++ {
		c := msg[i]
		if (c < 'A' || c > 'Z') && c != '_' {
			return ""
		}
	}
	return msg[:end]
}
