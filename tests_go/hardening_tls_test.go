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
	"strings"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
	"github.com/rate-limiter-go/rate_limiter_go/backends/redis"
	"github.com/rate-limiter-go/rate_limiter_go/tests_go/redistest"
)

// pkiFiles are the PEM files of a throw-away PKI: one CA that signs a server
// certificate for 127.0.0.1 and a client certificate, and an unrelated CA.
type pkiFiles struct {
	caCert, serverCert, serverKey, clientCert, clientKey, otherCA string
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue creates a key and a certificate from tmpl signed by parent/parentKey
// (self-signed when parent is nil) and writes both to dir/name.{crt,key}.
func issue(t *testing.T, dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+".key"), "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	caTmpl := func(serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	ca, caKey := issue(t, dir, "ca", caTmpl(1), nil, nil)
	issue(t, dir, "other-ca", caTmpl(2), nil, nil)
	issue(t, dir, "server", &x509.Certificate{SerialNumber: big.NewInt(3), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}},
		ca, caKey)
	issue(t, dir, "client", &x509.Certificate{SerialNumber: big.NewInt(4), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	p := func(n string) string { return filepath.Join(dir, n) }
	return pkiFiles{p("ca.crt"), p("server.crt"), p("server.key"), p("client.crt"), p("client.key"), p("other-ca.crt")}
}

// TestRedisTLSFiles: a rediss:// server is verified against Options.TLSCAFile
// and, when it requires client certificates, accepts Options.TLSCertFile/KeyFile.
func TestRedisTLSFiles(t *testing.T) {
	pki := writePKI(t)
	limits := []algorithms.Limit{{Limit: 5, WindowUS: secondUS}}
	for _, authClients := range []string{"no", "yes"} {
		tlsPort, err := redistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", pki.serverCert,
			"--tls-key-file", pki.serverKey, "--tls-ca-cert-file", pki.caCert, "--tls-auth-clients", authClients)
		url := "rediss://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
		tests := []struct {
			name  string
			opts  redis.Options
			works bool
		}{
			{"CA file", redis.Options{TLSCAFile: pki.caCert}, authClients == "no"},
			{"CA file and client certificate", redis.Options{TLSCAFile: pki.caCert, TLSCertFile: pki.clientCert,
				TLSKeyFile: pki.clientKey}, true},
			{"another CA", redis.Options{TLSCAFile: pki.otherCA, TLSCertFile: pki.clientCert,
				TLSKeyFile: pki.clientKey}, false},
			{"system roots", redis.Options{}, false},
		}
		for _, tt := range tests {
			t.Run("auth-clients="+authClients+"/"+tt.name, func(t *testing.T) {
				tt.opts.URL = url
				tt.opts.BreakerFailures = 100
				tt.opts.ConnectTimeout = 2 * time.Second
				tt.opts.CommandTimeout = 2 * time.Second
				b := newRedisBackend(t, url, tt.opts)
				out := make([]algorithms.Outcome, 1)
				admitted, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(),
					[]string{uniquePrefix(t)}, limits, 0, out)
				if tt.works {
					if err != nil || !admitted {
						t.Fatalf("admitted %v, err %v; want the first request admitted over TLS", admitted, err)
					}
					return
				}
				if !errors.Is(err, redis.ErrUnavailable) {
					t.Fatalf("err %v, want ErrUnavailable (TLS refused)", err)
				}
			})
		}
	}
}

// TestRedisTLSFileOptionsRejected: bad TLS options fail at New, before any network traffic.
func TestRedisTLSFileOptionsRejected(t *testing.T) {
	pki := writePKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts redis.Options
	}{
		{"CA file without rediss", redis.Options{URL: "redis://127.0.0.1:1", TLSCAFile: pki.caCert}},
		{"missing CA file", redis.Options{URL: "rediss://127.0.0.1:1", TLSCAFile: pki.caCert + ".missing"}},
		{"CA file without PEM", redis.Options{URL: "rediss://127.0.0.1:1", TLSCAFile: notPEM}},
		{"certificate without key", redis.Options{URL: "rediss://127.0.0.1:1", TLSCertFile: pki.clientCert}},
		{"key without certificate", redis.Options{URL: "rediss://127.0.0.1:1", TLSKeyFile: pki.clientKey}},
		{"key of another certificate", redis.Options{URL: "rediss://127.0.0.1:1", TLSCertFile: pki.clientCert,
			TLSKeyFile: pki.serverKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := redis.New(testOptions(tt.opts.URL, tt.opts)); err == nil {
				_ = b.Close()
				t.Fatal("New accepted the options")
			}
		})
	}
}

// TestRedisTLSVerification: Options.TLSSkipHostnameCheck verifies the chain
// but not the host name; Options.TrustCertFile/TrustCertDirs (the host
// process's SSL_CERT_FILE/SSL_CERT_DIR) extend the system roots.
func TestRedisTLSVerification(t *testing.T) {
	pki := writePKI(t)
	dir := filepath.Dir(pki.caCert)
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(mustPEMBlock(t, caPEM))
	if err != nil {
		t.Fatal(err)
	}
	caKey := loadECKey(t, filepath.Join(dir, "ca.key"))
	// A certificate from the trusted CA, for a host name the URL does not use.
	issue(t, dir, "other-host", &x509.Certificate{SerialNumber: big.NewInt(5), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"other.example"}}, ca, caKey)
	trustDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(trustDir, "test-ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	servers := map[string]string{}
	for name, cert := range map[string]string{"right host": pki.serverCert, "other host": filepath.Join(dir, "other-host.crt")} {
		port, err := redistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		key := strings.TrimSuffix(cert, ".crt") + ".key"
		redistest.Start(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", cert, "--tls-key-file", key,
			"--tls-ca-cert-file", pki.caCert, "--tls-auth-clients", "no")
		servers[name] = "rediss://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	limits := []algorithms.Limit{{Limit: 5, WindowUS: secondUS}}
	tests := []struct {
		name, server string
		opts         redis.Options
		works        bool
	}{
		{"CA file, other host", "other host", redis.Options{TLSCAFile: pki.caCert}, false},
		{"CA file, other host, no hostname check", "other host",
			redis.Options{TLSCAFile: pki.caCert, TLSSkipHostnameCheck: true}, true},
		{"unknown CA, no hostname check", "other host",
			redis.Options{TLSCAFile: pki.otherCA, TLSSkipHostnameCheck: true}, false},
		{"system roots, no hostname check", "other host", redis.Options{TLSSkipHostnameCheck: true}, false},
		{"host trust file, no hostname check", "other host",
			redis.Options{TrustCertFile: pki.caCert, TLSSkipHostnameCheck: true}, true},
		{"host trust file, other host", "other host", redis.Options{TrustCertFile: pki.caCert}, false},
		{"host trust file", "right host", redis.Options{TrustCertFile: pki.caCert}, true},
		{"host trust dirs", "right host", redis.Options{TrustCertDirs: "/nonexistent:" + trustDir}, true},
		{"host trust file without the CA", "right host", redis.Options{TrustCertFile: pki.otherCA}, false},
		{"CA file wins over host trust", "right host",
			redis.Options{TLSCAFile: pki.otherCA, TrustCertFile: pki.caCert}, false},
		{"right host, no hostname check", "right host",
			redis.Options{TLSCAFile: pki.caCert, TLSSkipHostnameCheck: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := servers[tt.server]
			tt.opts.URL = url
			tt.opts.BreakerFailures = 100
			tt.opts.ConnectTimeout = 2 * time.Second
			tt.opts.CommandTimeout = 2 * time.Second
			b := newRedisBackend(t, url, tt.opts)
			out := make([]algorithms.Outcome, 1)
			admitted, err := b.of(algorithms.FixedWindow).Evaluate(context.Background(), []string{uniquePrefix(t)}, limits, 0, out)
			if tt.works {
				if err != nil || !admitted {
					t.Fatalf("admitted %v, err %v; want the first request admitted over TLS", admitted, err)
				}
				return
			}
			if !errors.Is(err, redis.ErrUnavailable) {
				t.Fatalf("err %v, want ErrUnavailable (TLS refused)", err)
			}
		})
	}
}

func mustPEMBlock(t *testing.T, data []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

func loadECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParseECPrivateKey(mustPEMBlock(t, data))
	if err != nil {
		t.Fatal(err)
	}
	return key
}
