package redis

import (
	"errors"
	"strings"
	"testing"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

func TestParseReplyValid(t *testing.T) {
	const now = 1_800_000_000_000_000
	two := []algorithms.Limit{{Limit: 3, WindowUS: 1_000_000}, {Limit: 5, WindowUS: 60_000_000}}
	tests := []struct {
		name     string
		reply    []int64
		nowUS    int64
		limits   []algorithms.Limit
		admitted bool
		want     []algorithms.Outcome
	}{
		{
			name:  "admitted, two keys",
			reply: []int64{1, now, 1, 2, now + 1_000_000, 0, 1, 4, now + 60_000_000, 0},
			nowUS: now, limits: two, admitted: true,
			want: []algorithms.Outcome{
				{OK: true, Remaining: 2, ResetAtUS: now + 1_000_000},
				{OK: true, Remaining: 4, ResetAtUS: now + 60_000_000},
			},
		},
		{
			name:  "blocked by the second key; the first keeps retry 0",
			reply: []int64{0, now, 1, 1, now + 1_000_000, 0, 0, 0, now + 60_000_000, 400_000},
			nowUS: now, limits: two, admitted: false,
			want: []algorithms.Outcome{
				{OK: true, Remaining: 1, ResetAtUS: now + 1_000_000},
				{OK: false, Remaining: 0, ResetAtUS: now + 60_000_000, RetryAfterUS: 400_000},
			},
		},
		{
			name:  "Redis TIME: any positive now is accepted",
			reply: []int64{1, 1_700_000_000_123_456, 1, 0, 1_700_000_001_000_000, 0},
			nowUS: 0, limits: two[:1], admitted: true,
			want: []algorithms.Outcome{{OK: true, Remaining: 0, ResetAtUS: 1_700_000_001_000_000}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]algorithms.Outcome, len(tt.limits))
			admitted, _, err := parseReply(tt.reply, tt.limits, tt.nowUS, out)
			if err != nil {
				t.Fatalf("parseReply: %v", err)
			}
			if admitted != tt.admitted {
				t.Errorf("admitted = %v, want %v", admitted, tt.admitted)
			}
			for i := range tt.want {
				if out[i] != tt.want[i] {
					t.Errorf("out[%d] = %+v, want %+v", i, out[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseReplyMalformed(t *testing.T) {
	const now = 1_800_000_000_000_000
	one := []algorithms.Limit{{Limit: 3, WindowUS: 1_000_000}}
	two := []algorithms.Limit{{Limit: 3, WindowUS: 1_000_000}, {Limit: 3, WindowUS: 1_000_000}}
	reset := int64(now + 1_000_000)
	tests := []struct {
		name   string
		reply  []int64
		limits []algorithms.Limit
		nowUS  int64
		want   string
	}{
		{"nil reply", nil, one, now, "wrong length"},
		{"empty reply", []int64{}, one, now, "wrong length"},
		{"one key short", []int64{1, now, 1, 2, reset, 0}, two, now, "wrong length"},
		{"one value short", []int64{1, now, 1, 2, reset}, one, now, "wrong length"},
		{"one value too many", []int64{1, now, 1, 2, reset, 0, 7}, one, now, "wrong length"},
		{"admitted flag 2", []int64{2, now, 1, 2, reset, 0}, one, now, "admitted flag"},
		{"admitted flag -1", []int64{-1, now, 1, 2, reset, 0}, one, now, "admitted flag"},
		{"now differs from the override", []int64{1, now + 1, 1, 2, reset, 0}, one, now, "now_us"},
		{"now zero under Redis TIME", []int64{1, 0, 1, 2, reset, 0}, one, 0, "now_us"},
		{"ok flag 3", []int64{1, now, 3, 2, reset, 0}, one, now, "ok flag"},
		{"negative remaining", []int64{1, now, 1, -1, reset, 0}, one, now, "remaining"},
		{"remaining above the limit", []int64{1, now, 1, 4, reset, 0}, one, now, "remaining"},
		{"reset in the past", []int64{1, now, 1, 2, now - 1, 0}, one, now, "reset_at_us"},
		{"retry on an admitted request", []int64{1, now, 1, 2, reset, 5}, one, now, "retry_after_us"},
		{"no retry on the refusing key", []int64{0, now, 0, 0, reset, 0}, one, now, "retry_after_us"},
		{"negative retry", []int64{0, now, 0, 0, reset, -5}, one, now, "retry_after_us"},
		{"retry on a key that was ok", []int64{0, now, 0, 0, reset, 9, 1, 1, reset, 3}, two, now, "retry_after_us"},
		{"admitted although a key refused", []int64{1, now, 0, 0, reset, 0}, one, now, "admitted differs"},
		{"blocked although every key was ok", []int64{0, now, 1, 2, reset, 0}, one, now, "admitted differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sentinel := algorithms.Outcome{Remaining: -42}
			out := []algorithms.Outcome{sentinel, sentinel}
			_, _, err := parseReply(tt.reply, tt.limits, tt.nowUS, out)
			if err == nil {
				t.Fatal("parseReply accepted a malformed reply")
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), "malformed reply") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want a malformed-reply error mentioning %q", err, tt.want)
			}
			if out[0] != sentinel || out[1] != sentinel {
				t.Errorf("out was written on error: %+v", out)
			}
		})
	}
}
