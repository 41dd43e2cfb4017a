package core

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeIdentity(t *testing.T) {
	long := strings.Repeat("a", 128)
	longer := strings.Repeat("a", 129)
	sum := sha256.Sum256([]byte(longer))
	colons := strings.Repeat(":", 43) // 129 escaped bytes
	sumColons := sha256.Sum256([]byte(colons))
	tests := []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},       // §6 example
		{"team:1 {a}", "team%3A1%20%7Ba%7D"},             // §6 example
		{"A-Z_a.z+0@9", "A-Z_a.z+0@9"},                   // every kept class
		{"100%", "100%25"},                               // % itself is escaped
		{"~x", "%7Ex"},                                   // ~ never raw: cannot look hashed
		{"é", "%C3%A9"},                                  // UTF-8 bytes
		{"a\x00b", "a%00b"},                              // control bytes
		{"\x01", "%01"},                                  // the marker byte, escaped
		{long, long},                                     // exactly 128: kept
		{longer, "~" + hex.EncodeToString(sum[:])},       // 129: hashed
		{colons, "~" + hex.EncodeToString(sumColons[:])}, // escaping makes it long
		{strings.Repeat(":", 42) + "a", strings.Repeat("%3A", 42) + "a"}, // 127 escaped bytes: kept
	}
	for _, tt := range tests {
		if got := EscapeIdentity(tt.in); got != tt.want {
			t.Errorf("EscapeIdentity(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsEscapedIdentity(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	tests := []struct {
		in   string
		want bool
	}{
		{"alice", true},
		{"a%3Ab", true},
		{"%ED%A0%80", true}, // a lone surrogate, surrogatepass-encoded by Python
		{"~" + hex.EncodeToString(sum[:]), true},
		{"", false},
		{"a:b", false},   // raw colon
		{"a%3ab", false}, // lower-case hex
		{"a%3", false},   // truncated escape
		{"%41", false},   // escape of a kept byte: second spelling of "A"
		{"~abc", false},  // short hash
		{"~" + strings.Repeat("G", 64), false},
		{strings.Repeat("a", 129), false}, // too long to be unhashed
		{"a\x00", false},
	}
	for _, tt := range tests {
		if got := IsEscapedIdentity(tt.in); got != tt.want {
			t.Errorf("IsEscapedIdentity(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzEscapeIdentity checks the §6 guarantees: the escaped form uses only
// kept bytes, % escapes and a ~ hash, is at most 128 bytes unless hashed,
// is recognised by IsEscapedIdentity, and decodes back to the identity.
func FuzzEscapeIdentity(f *testing.F) {
	for _, s := range []string{"alice@example.com", "team:1 {a}", "", "%", "~", "\x00\x01", strings.Repeat("é", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		esc := EscapeIdentity(id)
		if id != "" && !IsEscapedIdentity(esc) {
			t.Fatalf("EscapeIdentity(%q) = %q is not recognised as escaped", id, esc)
		}
		if strings.HasPrefix(esc, "~") {
			sum := sha256.Sum256([]byte(id))
			if esc != "~"+hex.EncodeToString(sum[:]) {
				t.Fatalf("hashed form of %q is %q", id, esc)
			}
			return
		}
		if len(esc) > MaxEscapedIdentity {
			t.Fatalf("escaped %q is %d bytes", id, len(esc))
		}
		if !utf8.ValidString(esc) || strings.ContainsAny(esc, ":{} ~") {
			t.Fatalf("escaped %q contains a forbidden byte: %q", id, esc)
		}
		if back := unescape(t, esc); back != id {
			t.Fatalf("escaped %q decodes to %q", id, back)
		}
	})
}

func unescape(t *testing.T, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			t.Fatalf("bad escape in %q", s)
		}
		b.Write(v)
		i += 2
	}
	return b.String()
}

// TestEscapeIdentityMatchesReference checks the fast paths of
// AppendEscapedIdentity against the §6 definition written out plainly, on
// identities of every length around the hashing bound, kept-only, escaped
// at the start, middle and end.
func TestEscapeIdentityMatchesReference(t *testing.T) {
	reference := func(id string) string {
		var b strings.Builder
		for i := 0; i < len(id); i++ {
			c := id[i]
			if keep[c] {
				b.WriteByte(c)
			} else {
				b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
			}
		}
		if b.Len() > MaxEscapedIdentity {
			sum := sha256.Sum256([]byte(id))
			return "~" + hex.EncodeToString(sum[:])
		}
		return b.String()
	}
	for n := 1; n <= 140; n++ {
		base := strings.Repeat("a", n)
		ids := []string{base, ":" + base[1:], base[1:] + ":", base[:n/2] + " " + base[n/2+1:]}
		for _, id := range ids {
			got := string(AppendEscapedIdentity([]byte("pre"), id))
			if want := "pre" + reference(id); got != want {
				t.Fatalf("AppendEscapedIdentity(%q) = %q, want %q", id, got, want)
			}
		}
	}
}

// TestIsPlain: an identity is plain exactly when escaping leaves it as it is,
// whatever the position of the first byte that is escaped (the check reads
// four bytes at a time).
func TestIsPlain(t *testing.T) {
	for n := 0; n <= 9; n++ {
		for bad := -1; bad < n; bad++ {
			b := []byte(strings.Repeat("a", n))
			if bad >= 0 {
				b[bad] = ' '
			}
			id := string(b)
			if got, want := isPlain(id), EscapeIdentity(id) == id; got != want {
				t.Errorf("isPlain(%q) = %v, want %v", id, got, want)
			}
		}
	}
	for _, id := range []string{strings.Repeat("a", MaxEscapedIdentity), strings.Repeat("a", MaxEscapedIdentity+1),
		"\x01abc", "a.b-c_d@e+f", "ab%20"} {
		if got, want := isPlain(id), EscapeIdentity(id) == id; got != want {
			t.Errorf("isPlain(%q) = %v, want %v", id, got, want)
		}
	}
}
