package redis

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced monotonic clock in nanoseconds.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// step is one action on the breaker: advance the clock, then either call
// allow (checking its answer) and report a result, or only check allow.
type step struct {
	advance   time.Duration
	wantOK    bool
	wantProbe bool
	result    callResult // reported when wantOK
	wantState breakerState
}

func TestBreakerStateMachine(t *testing.T) {
	const cooldown = time.Second
	ok := func(r callResult, s breakerState) step { return step{wantOK: true, result: r, wantState: s} }
	probe := func(adv time.Duration, r callResult, s breakerState) step {
		return step{advance: adv, wantOK: true, wantProbe: true, result: r, wantState: s}
	}
	refused := func(adv time.Duration, s breakerState) step { return step{advance: adv, wantState: s} }

	tests := []struct {
		name      string
		threshold int
		steps     []step
	}{
		{"successes keep it closed", 3, []step{
			ok(resultSuccess, stateClosed), ok(resultSuccess, stateClosed),
		}},
		{"failures below the threshold keep it closed", 3, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateClosed),
		}},
		{"a success resets the consecutive count", 3, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateClosed), ok(resultSuccess, stateClosed),
			ok(resultFailure, stateClosed), ok(resultFailure, stateClosed),
		}},
		{"threshold consecutive failures open it; it fails fast during the cooldown", 3, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateClosed), ok(resultFailure, stateOpen),
			refused(0, stateOpen), refused(cooldown-1, stateOpen),
		}},
		{"threshold 1 opens on the first failure", 1, []step{
			ok(resultFailure, stateOpen), refused(0, stateOpen),
		}},
		{"after the cooldown one probe; its success closes it", 2, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateOpen),
			probe(cooldown, resultSuccess, stateClosed),
			ok(resultSuccess, stateClosed),
		}},
		{"a failed probe re-opens it for a full cooldown", 2, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateOpen),
			probe(cooldown, resultFailure, stateOpen),
			refused(cooldown/2, stateOpen), refused(cooldown/2-1, stateOpen),
			probe(1, resultSuccess, stateClosed),
		}},
		{"after closing, the count starts from zero", 2, []step{
			ok(resultFailure, stateClosed), ok(resultFailure, stateOpen),
			probe(cooldown, resultSuccess, stateClosed),
			ok(resultFailure, stateClosed), ok(resultFailure, stateOpen),
		}},
		{"a canceled call counts for nothing", 2, []step{
			ok(resultFailure, stateClosed), ok(resultNeutral, stateClosed), ok(resultFailure, stateOpen),
		}},
		{"a canceled probe lets the next call probe", 1, []step{
			ok(resultFailure, stateOpen),
			probe(cooldown, resultNeutral, stateHalfOpen),
			probe(0, resultSuccess, stateClosed),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{}
			b := newBreaker(tt.threshold, cooldown, clk.now)
			for i, s := range tt.steps {
				clk.advance(s.advance)
				gotOK, gotProbe := b.allow()
				if gotOK != s.wantOK || gotProbe != s.wantProbe {
					t.Fatalf("step %d: allow() = (%v, %v), want (%v, %v)", i, gotOK, gotProbe, s.wantOK, s.wantProbe)
				}
				if gotOK {
					b.done(gotProbe, s.result)
				}
				if got := b.state(); got != s.wantState {
					t.Fatalf("step %d: state %v, want %v", i, got, s.wantState)
				}
			}
		})
	}
}

// While a probe is in flight every other caller is refused: exactly one
// request reaches Redis per cooldown.
func TestBreakerSingleProbeUnderConcurrency(t *testing.T) {
	clk := &fakeClock{}
	b := newBreaker(1, time.Second, clk.now)
	if ok, _ := b.allow(); !ok {
		t.Fatal("closed breaker refused a call")
	}
	b.done(false, resultFailure)
	clk.advance(time.Second)

	var probes, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, probe := b.allow(); ok {
					admitted.Add(1)
					if probe {
						probes.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if probes.Load() != 1 || admitted.Load() != 1 {
		t.Fatalf("got %d probes and %d admitted calls, want exactly 1 of each", probes.Load(), admitted.Load())
	}
	if b.state() != stateHalfOpen {
		t.Fatalf("state %v with a probe in flight, want half-open", b.state())
	}
}

// A failure of a call that started before the breaker opened must not push
// the probe further away.
func TestBreakerLateFailureDoesNotExtendCooldown(t *testing.T) {
	clk := &fakeClock{}
	b := newBreaker(1, time.Second, clk.now)
	ok1, _ := b.allow()
	ok2, _ := b.allow() // in flight when the breaker opens
	if !ok1 || !ok2 {
		t.Fatal("closed breaker refused a call")
	}
	b.done(false, resultFailure)
	clk.advance(900 * time.Millisecond)
	b.done(false, resultFailure)
	clk.advance(100 * time.Millisecond)
	if ok, probe := b.allow(); !ok || !probe {
		t.Fatalf("allow() = (%v, %v) one cooldown after opening, want the probe", ok, probe)
	}
}

func TestBreakerStateString(t *testing.T) {
	for s, want := range map[breakerState]string{
		stateClosed: "closed", stateOpen: "open", stateHalfOpen: "half-open", 9: "invalid",
	} {
		if got := s.String(); got != want {
			t.Errorf("breakerState(%d).String() = %q, want %q", s, got, want)
		}
	}
}
