package core

import (
	"errors"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want algorithms.Limit
		ok   bool
	}{
		{"10/s", algorithms.Limit{Limit: 10, WindowUS: SecondUS}, true},
		{"10/sec", algorithms.Limit{Limit: 10, WindowUS: SecondUS}, true},
		{"10/second", algorithms.Limit{Limit: 10, WindowUS: SecondUS}, true},
		{"5/m", algorithms.Limit{Limit: 5, WindowUS: MinuteUS}, true},
		{"5/MIN", algorithms.Limit{Limit: 5, WindowUS: MinuteUS}, true},
		{"5/Minute", algorithms.Limit{Limit: 5, WindowUS: MinuteUS}, true},
		{"7/h", algorithms.Limit{Limit: 7, WindowUS: HourUS}, true},
		{"7/hr", algorithms.Limit{Limit: 7, WindowUS: HourUS}, true},
		{"7/hour", algorithms.Limit{Limit: 7, WindowUS: HourUS}, true},
		{"010/s", algorithms.Limit{Limit: 10, WindowUS: SecondUS}, true},       // §1 leading zeros
		{" 10 / M ", algorithms.Limit{Limit: 10, WindowUS: MinuteUS}, true},    // §1 example
		{"\t1\n/\v h\r\f", algorithms.Limit{Limit: 1, WindowUS: HourUS}, true}, // ASCII white space
		{"1/\u00a0h", algorithms.Limit{}, false},                               // not ASCII white space (Python re.ASCII \s)
		{"\x1c1/s", algorithms.Limit{}, false},
		{"1000000/s", algorithms.Limit{Limit: 1_000_000, WindowUS: SecondUS}, true},
		{"0000000000000000000001/s", algorithms.Limit{Limit: 1, WindowUS: SecondUS}, true},
		{"", algorithms.Limit{}, false},
		{"10", algorithms.Limit{}, false},
		{"10/d", algorithms.Limit{}, false},
		{"0/s", algorithms.Limit{}, false},
		{"1.5/s", algorithms.Limit{}, false},
		{"+1/s", algorithms.Limit{}, false},
		{"-1/s", algorithms.Limit{}, false},
		{"1 0/s", algorithms.Limit{}, false},
		{"1000001/s", algorithms.Limit{}, false},
		{"99999999999999999999999/s", algorithms.Limit{}, false},
		{"1_000/s", algorithms.Limit{}, false},
		{"١/s", algorithms.Limit{}, false}, // non-ASCII digit
		{"10/s/s", algorithms.Limit{}, false},
		{"10/seconds", algorithms.Limit{}, false},
		{"10/", algorithms.Limit{}, false},
		{"/s", algorithms.Limit{}, false},
		{"10/m in", algorithms.Limit{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("ParseRate(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", tt.in, got)
		} else if !errors.Is(err, ErrConfig) {
			t.Errorf("ParseRate(%q) error %v does not wrap ErrConfig", tt.in, err)
		}
	}
}

// FuzzParseRate checks that any accepted rate is in range and that a rate
// written back in canonical form parses to the same Limit (§1).
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10/s", " 10 / M ", "010/hour", "0/s", "1.5/s", "", "1000000/h", "\v1/\fs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if l.Limit < 1 || l.Limit > MaxRateLimit {
			t.Fatalf("%q: limit %d out of range", s, l.Limit)
		}
		unit := map[int64]string{SecondUS: "s", MinuteUS: "m", HourUS: "h"}[l.WindowUS]
		if unit == "" {
			t.Fatalf("%q: window %d µs is not a unit", s, l.WindowUS)
		}
		again, err := ParseRate(" " + itoa(l.Limit) + " / " + unit + " ")
		if err != nil || again != l {
			t.Fatalf("%q: canonical form gives %+v, %v; want %+v", s, again, err, l)
		}
	})
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
