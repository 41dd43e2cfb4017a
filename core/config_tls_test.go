package core

import (
	"errors"
	"testing"
)

// TestParseConfigTLSFiles: the redis_tls_* keys of canonical_json reach Config,
// only with a rediss:// URL and with certificate and key together.
func TestParseConfigTLSFiles(t *testing.T) {
	tests := []struct {
		name     string
		json     string
		ok       bool
		ca, cert string
	}{
		{"none", `{"backend":"redis","redis_url":"rediss://h:1"}`, true, "", ""},
		{"CA only", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_ca_file":"/ca.pem"}`, true, "/ca.pem", ""},
		{"mTLS", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_ca_file":"/ca.pem",` +
			`"redis_tls_cert_file":"/c.pem","redis_tls_key_file":"/k.pem"}`, true, "/ca.pem", "/c.pem"},
		{"CA without TLS", `{"backend":"redis","redis_url":"redis://h:1","redis_tls_ca_file":"/ca.pem"}`, false, "", ""},
		{"empty path", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_ca_file":""}`, false, "", ""},
		{"cert without key", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_cert_file":"/c.pem"}`, false, "", ""},
		{"key without cert", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_key_file":"/k.pem"}`, false, "", ""},
		{"wrong type", `{"backend":"redis","redis_url":"rediss://h:1","redis_tls_ca_file":1}`, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.json))
			if !tt.ok {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RedisTLSCAFile != tt.ca || cfg.RedisTLSCertFile != tt.cert {
				t.Errorf("CA %q cert %q, want %q %q", cfg.RedisTLSCAFile, cfg.RedisTLSCertFile, tt.ca, tt.cert)
			}
		})
	}
}

// TestParseConfigTLSVerification: redis_tls_check_hostname (default true) and
// the host process's trust variables that engine_go adds for rediss:// URLs.
func TestParseConfigTLSVerification(t *testing.T) {
	const tls = `{"backend":"redis","redis_url":"rediss://h:1"`
	tests := []struct {
		name          string
		json          string
		ok            bool
		checkHostname bool
		file, dir     string
	}{
		{"defaults", tls + `}`, true, true, "", ""},
		{"no hostname check", tls + `,"redis_tls_check_hostname":false}`, true, false, "", ""},
		{"explicit hostname check", tls + `,"redis_tls_check_hostname":true}`, true, true, "", ""},
		{"hostname check without TLS is ignored", `{"redis_url":"redis://h:1","redis_tls_check_hostname":false}`,
			true, false, "", ""},
		{"hostname check not a bool", tls + `,"redis_tls_check_hostname":"no"}`, false, true, "", ""},
		{"host trust", tls + `,"host_ssl_cert_file":"/a.pem","host_ssl_cert_dir":"/d1:/d2"}`, true, true, "/a.pem",
			"/d1:/d2"},
		{"host trust without TLS", `{"redis_url":"redis://h:1","host_ssl_cert_file":"/a.pem"}`, false, true, "", ""},
		{"host trust empty", tls + `,"host_ssl_cert_dir":""}`, false, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.json))
			if !tt.ok {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RedisTLSCheckHostname != tt.checkHostname || cfg.HostSSLCertFile != tt.file ||
				cfg.HostSSLCertDir != tt.dir {
				t.Errorf("check hostname %v, file %q, dir %q; want %v %q %q", cfg.RedisTLSCheckHostname,
					cfg.HostSSLCertFile, cfg.HostSSLCertDir, tt.checkHostname, tt.file, tt.dir)
			}
		})
	}
}
