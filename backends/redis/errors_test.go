package redis

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// serverReply stands for an error reply from Redis (go-redis's type is internal).
type serverReply string

func (e serverReply) Error() string { return string(e) }
func (serverReply) RedisError()     {}

var _ goredis.Error = serverReply("")

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	readTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"caller canceled", context.Canceled, "canceled"},
		{"wrapped cancel", fmt.Errorf("dial: %w", context.Canceled), "canceled"},
		{"context deadline", context.DeadlineExceeded, "timeout"},
		{"socket read deadline", readTimeout, "timeout"},
		{"connection refused", refused, "connection refused"},
		{"missing unix socket", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)},
			"socket not found"},
		{"connection reset", reset, "connection lost"},
		{"EOF", io.EOF, "connection lost"},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), "connection lost"},
		{"client closed", goredis.ErrClosed, "client closed"},
		{"pool timeout", goredis.ErrPoolTimeout, "connection pool exhausted"},
		{"NOSCRIPT", goredis.ErrNoScript, "server error NOSCRIPT"},
		{"WRONGTYPE", serverReply("WRONGTYPE Operation against a key holding the wrong kind of value"),
			"server error WRONGTYPE"},
		{"auth", serverReply("WRONGPASS invalid username-password pair or user is disabled."), "server error WRONGPASS"},
		{"lower-case reply", serverReply("something odd"), "server error"},
		{"unknown CA", x509.UnknownAuthorityError{}, "tls error"},
		{"unparsable int element", errors.New(`redis: can't parse int reply: "*2"`), "malformed reply"},
		{"number syntax", &strconv.NumError{Func: "ParseInt", Num: "x", Err: strconv.ErrSyntax}, "malformed reply"},
		{"other net error", &net.OpError{Op: "write", Net: "tcp", Err: errors.New("weird")}, "network error"},
		{"anything else", errors.New("boom"), "unexpected error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// A server error that quotes a key (an identity) must come out without it,
// and the raw error must not be reachable through Unwrap.
func TestSanitizeDropsKeysAndArguments(t *testing.T) {
	const key = "rl:fw:user:10/60:alice@example.com"
	raw := serverReply("ERR user_script:7: bad argument '" + key + "' script: 0123abcd")
	err := sanitize("evalsha", raw)
	msg := err.Error()
	if strings.Contains(msg, "alice") || strings.Contains(msg, key) || strings.Contains(msg, "user_script") {
		t.Fatalf("sanitised error %q still carries the server text", msg)
	}
	if msg != "redis backend unavailable: evalsha: server error ERR" {
		t.Errorf("sanitised error %q", msg)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Error("sanitised error does not wrap ErrUnavailable")
	}
	var reach serverReply
	if errors.As(err, &reach) {
		t.Error("the raw server error is reachable through Unwrap")
	}
	if errors.Is(err, context.Canceled) {
		t.Error("a server error claims to be a cancellation")
	}
}

func TestSanitizeKeepsCancellation(t *testing.T) {
	err := sanitize("evalsha", fmt.Errorf("pool: %w", context.Canceled))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v: want both context.Canceled and ErrUnavailable", err)
	}
	if resultOf(err) != resultNeutral {
		t.Error("a cancellation counted as a Redis failure or success")
	}
	if resultOf(sanitize("evalsha", context.DeadlineExceeded)) != resultFailure {
		t.Error("a timeout did not count as a failure")
	}
}

func TestSentinelErrors(t *testing.T) {
	for _, err := range []error{ErrBreakerOpen, ErrClosed, malformed("x")} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%v does not wrap ErrUnavailable", err)
		}
	}
	inv := invalidAt(2, "empty key")
	if !errors.Is(inv, ErrInvalidRequest) || errors.Is(inv, ErrUnavailable) {
		t.Errorf("%v: want ErrInvalidRequest and not ErrUnavailable", inv)
	}
	if got := inv.Error(); got != "redis backend: invalid request: dimension 2: empty key" {
		t.Errorf("invalidAt message %q", got)
	}
}

func TestServerErrorPrefix(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"NOSCRIPT No matching script.", "NOSCRIPT"},
		{"ERR Error running script", "ERR"},
		{"BUSY Redis is busy running a script.", "BUSY"},
		{"CROSS_SLOT x", "CROSS_SLOT"},
		{"LOADING", "LOADING"},
		{"", ""},
		{" leading space", ""},
		{"lowercase error", ""},
		{"alice@example.com is bad", ""},
		{strings.Repeat("A", 33) + " x", ""},
	}
	for _, tt := range tests {
		if got := serverErrorPrefix(tt.msg); got != tt.want {
			t.Errorf("serverErrorPrefix(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
