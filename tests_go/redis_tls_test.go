package tests_go

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// writeSelfSignedCert writes a throw-away certificate and key for 127.0.0.1
// into dir and returns their paths.
func writeSelfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "redistest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// rediss:// negotiates TLS and verifies the server against the system roots:
// a self-signed server is refused (a sanitised "tls error") unless the URL
// says skip_verify=true. Custom CA files and client certificates are tested
// in hardening_tls_test.go.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSignedCert(t, dir)
	tlsPort, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	limits := []algorithms.Limit{{Limit: 5, WindowUS: secondUS}}

	t.Run("unverified certificate refused", func(t *testing.T) {
		b := newRedisBackend(t, "rediss://"+addr, redis.Options{BreakerFailures: 100})
		out := make([]algorithms.Outcome, 1)
		_, err := b.Evaluate(context.Background(), algorithms.FixedWindow, []string{uniquePrefix(t)}, limits, 0, out)
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
