package core

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// MaxEscapedIdentity is the longest escaped identity kept in a key; longer
// ones are replaced by "~" and a SHA-256 digest (docs/semantics.md §6).
const MaxEscapedIdentity = 128

// IdentityMarker starts an identity that the Python side has already escaped
// (§6 escaped form) because it could not cross the binding raw: it contains
// NUL, a lone surrogate, or itself starts with the marker. See docs/engine.md.
const IdentityMarker = '\x01'

// hashedLen is the length of a hashed identity: "~" and 64 hex digits.
const hashedLen = 1 + 2*sha256.Size

// keep reports whether an identity byte is written as is (§6).
var keep = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range ".-_@+" {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

// EscapeIdentity returns the key component of an identity (§6): its bytes,
// each outside A-Z a-z 0-9 . _ - @ + written %XX; if that is longer than
// MaxEscapedIdentity bytes, "~" and the lower-case hex SHA-256 of the bytes.
func EscapeIdentity(id string) string {
	return string(AppendEscapedIdentity(nil, id))
}

// AppendEscapedIdentity appends EscapeIdentity(id) to dst and returns the
// extended buffer. It allocates only when dst is too small (a hashed
// identity needs room for its raw bytes while they are hashed).
func AppendEscapedIdentity(dst []byte, id string) []byte {
	// Most identities are kept bytes only: find the first byte that is not,
	// and copy a kept-only identity in one append.
	i := 0
	for i < len(id) && keep[id[i]] {
		i++
	}
	if i == len(id) && i <= MaxEscapedIdentity {
		return append(dst, id...)
	}
	// The escaped length, counted until it is known to be too long: a kept
	// byte is 1, any other 3 (id[i], if any, is the first of those).
	n := len(id)
	if i < len(id) {
		n += 2
		for j := i + 1; j < len(id) && n <= MaxEscapedIdentity; j++ {
			if !keep[id[j]] {
				n += 2
			}
		}
	}
	if n > MaxEscapedIdentity {
		// Hash the bytes where they will be overwritten, so that no
		// temporary []byte is allocated when dst has room for them.
		start := len(dst)
		dst = append(dst, id...)
		sum := sha256.Sum256(dst[start:])
		dst = append(dst[:start], '~')
		return hex.AppendEncode(dst, sum[:])
	}
	dst = append(dst, id[:i]...)
	for ; i < len(id); i++ {
		c := id[i]
		if keep[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

// keepMask is keep as bytes (1 kept, 0 not), so that isPlain can AND four
// bytes' answers and branch once per four.
var keepMask = func() (t [256]uint8) {
	for c, k := range keep {
		if k {
			t[c] = 1
		}
	}
	return t
}()

// isPlain reports whether an identity is its own escaped form (§6): kept
// bytes only, at most MaxEscapedIdentity of them. A marked identity is not.
func isPlain(id string) bool {
	if len(id) > MaxEscapedIdentity {
		return false
	}
	// Reslicing keeps the indexes constant, so the compiler checks bounds
	// once per four bytes.
	for len(id) >= 4 {
		if keepMask[id[0]]&keepMask[id[1]]&keepMask[id[2]]&keepMask[id[3]] == 0 {
			return false
		}
		id = id[4:]
	}
	for i := 0; i < len(id); i++ {
		if !keep[id[i]] {
			return false
		}
	}
	return true
}

// appendIdentity appends the key component of an identity as received from
// the binding: a marked identity is already escaped and is checked, not
// escaped again.
func appendIdentity(dst []byte, id string) ([]byte, error) {
	if len(id) > 0 && id[0] == IdentityMarker {
		esc := id[1:]
		if !IsEscapedIdentity(esc) {
			return dst, fmt.Errorf("%w: a marked identity is not in escaped form", ErrBadArgument)
		}
		return append(dst, esc...), nil
	}
	return AppendEscapedIdentity(dst, id), nil
}

// IsEscapedIdentity reports whether s is a form EscapeIdentity can return for
// a non-empty identity: kept bytes and %XX escapes, at most
// MaxEscapedIdentity bytes, or "~" and 64 lower-case hex digits.
func IsEscapedIdentity(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '~' {
		if len(s) != hashedLen {
			return false
		}
		for i := 1; i < len(s); i++ {
			c := s[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	if len(s) > MaxEscapedIdentity {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep[c] {
			continue
		}
		if c != '%' || i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
			return false
		}
		// An escape of a byte that is kept raw would be a second spelling
		// of the same identity.
		if keep[unhex(s[i+1])<<4|unhex(s[i+2])] {
			return false
		}
		i += 2
	}
	return true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// keyPrefix returns "<prefix>:<algo>:<dimension>:<limit>/<window_s>:", the
// part of a key (§6) fixed by the configuration.
func keyPrefix(prefix, algoTag, dimension string, limit, windowUS int64) string {
	return fmt.Sprintf("%s:%s:%s:%d/%d:", prefix, algoTag, dimension, limit, windowUS/SecondUS)
}
