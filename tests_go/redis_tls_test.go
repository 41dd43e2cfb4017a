package tests_go

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// rediss:// negotiates TLS and verifies the server against the system roots:
// a server signed by a test CA is refused (a sanitised "tls error") unless the URL
// says skip_verify=true. Custom CA files and client certificates are tested
// in hardening_tls_test.go.
func TestRedisTLS(t *testing.T) {
	pki := writePKI(t) // hardening_tls_test.go: a throw-away CA, not in the system roots
	tlsPort, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", pki.serverCert,
		"--tls-key-file", pki.serverKey, "--tls-ca-cert-file", pki.caCert, "--tls-auth-clients", "no")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	limits := []algorithms.Limit{{Limit: 5, WindowUS: secondUS}}

	t.Run("unverified certificate refused", func(t *testing.T) {
		b := newRedisBackend(t, "rediss://"+addr, redis.Options{BreakerFailures: 100})
		out := make([]algorithms.Outcome, 1)
		_, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{uniquePrefix(t)}, limits, 0, out)
		if !errors.Is(err, redis.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		if err.Error() != "redis backend unavailable: evalsha: tls error" {
			t.Errorf("error %q, want the tls error class", err)
		}
	})
	t.Run("skip_verify", func(t *testing.T) {
		b := newRedisBackend(t, "rediss://"+addr+"?skip_verify=true", redis.Options{})
		if admitted, _ := evalOne(t, b, algorithms.FixedWindow, []string{uniquePrefix(t)}, limits, 0); !admitted {
			t.Fatal("first request over TLS blocked")
		}
	})
}
