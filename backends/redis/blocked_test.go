package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/rate-limiter-go/rate_limiter_go/algorithms"
)

// refusal is a blocked §9 outcome of one key: it refused and must wait waitUS.
func refusal(waitUS, resetAtUS int64) algorithms.Outcome {
	return algorithms.Outcome{ResetAtUS: resetAtUS, RetryAfterUS: waitUS}
}

func TestBlockedCacheJudgesOnTheMonotonicClock(t *testing.T) {
	const sent, received = int64(1_000_000_000), int64(1_002_000_000) // ns: a 2 ms round trip
	const replyNow, wait = int64(5_000_000_000_000), int64(3_000_000) // µs: Redis clock, a 3 s wait
	expires := sent + (wait-wait/driftDivisor)*1000
	tests := []struct {
		name        string
		at          int64 // monotonic ns of the later request
		wantBlocked bool
		wantRetryUS int64
	}{
		{"just after the reply: the whole wait less nothing", received, true, wait},
		{"one second later: the wait less that second, plus the drift allowance", received + 1e9, true, wait - 1_000_000 + 1_000},
		{"the last instant before expiry", expires - 1, true, wait - (expires-1-received)/1000 + (expires-1-received)/1000/driftDivisor},
		{"at expiry: Redis may admit by now, so ask it", expires, false, 0},
		{"long after", expires + 10e9, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.at
			c := newBlockedCache(10, func() int64 { return now })
			keys := []string{"rl:fw:user:1/3600:{a}"}
			limits := []algorithms.Limit{{Limit: 1, WindowUS: 3_600_000_000}}
			c.record(keys, false, []algorithms.Outcome{refusal(wait, replyNow+wait)}, replyNow, sent, received)
			out := make([]algorithms.Outcome, 1)
			got := c.answer(keys, limits, 0, out)
			if got != tt.wantBlocked {
				t.Fatalf("answered locally = %v, want %v", got, tt.wantBlocked)
			}
			if !got {
				if c.m.Size() != 0 {
					t.Errorf("an expired entry was kept")
				}
				return
			}
			want := algorithms.Outcome{ResetAtUS: replyNow + wait, RetryAfterUS: tt.wantRetryUS}
			if out[0] != want {
				t.Errorf("outcome %+v, want %+v", out[0], want)
			}
			// Never shorter than what Redis could still ask for: its clock has advanced
			// at least (at - received), less the drift allowance.
			if minWait := wait - (tt.at-received)/1000; out[0].RetryAfterUS < minWait {
				t.Errorf("retry %d µs is shorter than the wait left, %d µs", out[0].RetryAfterUS, minWait)
			}
		})
	}
}

func TestBlockedCacheWithAnExplicitClock(t *testing.T) {
	const replyNow, wait = int64(10_000_000), int64(400_000)
	tests := []struct {
		name        string
		nowUS       int64
		wantBlocked bool
	}{
		{"at the refusal's instant", replyNow, true},
		{"inside the wait", replyNow + wait - 1, true},
		{"at blocked_until_us", replyNow + wait, false},
		{"earlier than the refusal: the script decides", replyNow - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newBlockedCache(10, func() int64 { return 0 })
			keys := []string{"k"}
			limits := []algorithms.Limit{{Limit: 3, WindowUS: 1_000_000}}
			c.record(keys, false, []algorithms.Outcome{refusal(wait, replyNow+wait)}, replyNow, 0, 0)
			out := make([]algorithms.Outcome, 1)
			if got := c.answer(keys, limits, tt.nowUS, out); got != tt.wantBlocked {
				t.Fatalf("answered locally = %v, want %v", got, tt.wantBlocked)
			}
			if tt.wantBlocked && out[0].RetryAfterUS != replyNow+wait-tt.nowUS {
				t.Errorf("retry %d, want exactly blocked_until_us - now_us = %d", out[0].RetryAfterUS, replyNow+wait-tt.nowUS)
			}
			if c.m.Size() != 1 {
				t.Errorf("an explicit clock may go back: the entry must stay, size %d", c.m.Size())
			}
		})
	}
}

func TestBlockedCacheReportsOnlyRememberedKeys(t *testing.T) {
	c := newBlockedCache(10, func() int64 { return 0 })
	const now = int64(1_000_000)
	keys := []string{"user", "tenant", "tool"}
	limits := []algorithms.Limit{{Limit: 5, WindowUS: 1e6}, {Limit: 7, WindowUS: 1e6}, {Limit: 9, WindowUS: 1e6}}
	// A refusal by tenant and tool; user admitted in that reply.
	c.record(keys, false, []algorithms.Outcome{
		{OK: true, Remaining: 2, ResetAtUS: now + 1e6},
		refusal(300_000, now+300_000),
		refusal(700_000, now+700_000),
	}, now, 0, 0)
	if c.m.Size() != 2 {
		t.Fatalf("remembered %d keys, want the 2 that refused", c.m.Size())
	}
	out := make([]algorithms.Outcome, 3)
	if !c.answer(keys, limits, now+100_000, out) {
		t.Fatal("not answered locally")
	}
	want := []algorithms.Outcome{
		{OK: true, Remaining: 5}, // not consulted: never the reported one
		refusal(200_000, now+300_000),
		refusal(600_000, now+700_000),
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("out[%d] = %+v, want %+v", i, out[i], want[i])
		}
	}
	if c.local.Load() != 1 {
		t.Errorf("local refusals %d, want 1", c.local.Load())
	}
	// A request of the user alone is not blocked by what tenant and tool remember.
	if c.answer(keys[:1], limits[:1], now+100_000, out) {
		t.Error("a request without a remembered key was answered locally")
	}
}

func TestBlockedCacheBound(t *testing.T) {
	var mono int64
	c := newBlockedCache(3, func() int64 { return mono })
	refuse := func(key string, waitUS int64) {
		c.record([]string{key}, false, []algorithms.Outcome{refusal(waitUS, waitUS)}, 1, mono, mono)
	}
	for i := 0; i < 3; i++ {
		refuse(fmt.Sprint("live", i), 3_600_000_000)
	}
	mono += int64(2 * time.Second) // the first sweep is due, but every entry is live
	refuse("short", 1_000)
	if c.m.Size() != 3 {
		t.Fatalf("size %d over the bound 3", c.m.Size())
	}
	if _, ok := c.m.Load("short"); ok {
		t.Fatal("a full cache of live refusals took a new key")
	}
	// Expire one entry by hand (as if its wait had passed), then the next sweep makes room.
	c.m.Store("live0", blockedEntry{expiresAtNS: mono})
	refuse("next", 1_000) // within a second of the last sweep: no sweep, no room
	if _, ok := c.m.Load("next"); ok {
		t.Fatal("swept twice within a second")
	}
	mono += int64(2 * time.Second)
	refuse("next", 1_000)
	if _, ok := c.m.Load("next"); !ok || c.m.Size() != 3 {
		t.Fatalf("after a sweep: next remembered=%v, size %d; want true, 3", ok, c.m.Size())
	}
}

func TestBlockedCacheOffAtZero(t *testing.T) {
	if c := newBlockedCache(0, nil); c != nil {
		t.Fatal("max keys 0 must turn local refusals off")
	}
}
