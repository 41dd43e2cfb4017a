package core

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// MaxRateLimit is the largest count a rate may have (docs/semantics.md §1).
const MaxRateLimit = 1_000_000

// Window lengths in µs of the rate units (§1).
const (
	SecondUS = int64(1_000_000)
	MinuteUS = 60 * SecondUS
	HourUS   = 3600 * SecondUS
)

// ParseRate parses a rate string "<count>/<unit>" (docs/semantics.md §1) into
// a Limit: count requests per unit, the unit's length in µs. Whitespace around
// the whole string and around "/" (ASCII white space) is ignored; the unit is
// case-insensitive.
func ParseRate(s string) (algorithms.Limit, error) {
	count, unit, found := strings.Cut(s, "/")
	if !found {
		return algorithms.Limit{}, fmt.Errorf("%w: rate %q: want <count>/<unit>, e.g. 10/m", ErrConfig, s)
	}
	count, unit = trimASCIISpace(count), trimASCIISpace(unit)
	n, err := parseCount(count)
	if err != nil {
		return algorithms.Limit{}, fmt.Errorf("%w: rate %q: %w", ErrConfig, s, err)
	}
	w, ok := unitUS(unit)
	if !ok {
		return algorithms.Limit{}, fmt.Errorf("%w: rate %q: unknown unit %q (want s, m or h)", ErrConfig, s, unit)
	}
	return algorithms.Limit{Limit: n, WindowUS: w}, nil
}

// trimASCIISpace strips the white space the rate grammar allows: ASCII space,
// tab, newline, carriage return, vertical tab and form feed (Python's \s with
// re.ASCII, as the Python engine's parser uses).
func trimASCIISpace(s string) string {
	isSp := func(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
	for len(s) > 0 && isSp(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSp(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// parseCount accepts 1..MaxRateLimit in ASCII decimal digits, leading zeros allowed.
func parseCount(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("missing count")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("count must be a whole number of digits")
		}
		n = n*10 + int64(c-'0')
		if n > MaxRateLimit {
			return 0, fmt.Errorf("count above %d", MaxRateLimit)
		}
	}
	if n < 1 {
		return 0, fmt.Errorf("count must be at least 1")
	}
	return n, nil
}

// unitUS maps a unit name, case-insensitively, to its length in µs.
func unitUS(u string) (int64, bool) {
	if len(u) > len("minute") {
		return 0, false
	}
	var lower [6]byte
	for i := 0; i < len(u); i++ {
		c := u[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower[:len(u)]) {
	case "s", "sec", "second":
		return SecondUS, true
	case "m", "min", "minute":
		return MinuteUS, true
	case "h", "hr", "hour":
		return HourUS, true
	}
	return 0, false
}

// isSpace matches what Python's str.strip() removes: Unicode white space plus
// the ASCII separators U+001C..U+001F. Used to check that tool names arrive
// normalised.
func isSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// trimSpace strips isSpace runes from both ends; invalid UTF-8 is kept.
func trimSpace(s string) string {
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n <= 1 || !isSpace(r) {
			break
		}
		s = s[n:]
	}
	for len(s) > 0 {
		r, n := utf8.DecodeLastRuneInString(s)
		if r == utf8.RuneError && n <= 1 || !isSpace(r) {
			break
		}
		s = s[:len(s)-n]
	}
	return s
}
