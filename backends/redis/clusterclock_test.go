package redis

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestClusterClockFollowsTheSampleAndNeverGoesBack(t *testing.T) {
	var server atomic.Int64
	server.Store(1_700_000_000_000_000)
	var samples atomic.Int64
	c := newClusterClock(func(context.Context) (int64, error) {
		samples.Add(1)
		return server.Load(), nil
	}, 20*time.Millisecond, time.Second)
	ctx := context.Background()
	first, err := c.NowUS(ctx)
	if err != nil || first < 1_700_000_000_000_000 || first > 1_700_000_000_000_000+100_000 {
		t.Fatalf("first NowUS = %d, %v: want the sampled time", first, err)
	}
	// The server's clock steps back by a second: the clock holds still instead of going back.
	server.Store(1_700_000_000_000_000 - 1_000_000)
	time.Sleep(30 * time.Millisecond)
	prev := first
	deadline := time.Now().Add(2 * time.Second)
	for samples.Load() < 2 && time.Now().Before(deadline) {
		now, err := c.NowUS(ctx)
		if err != nil || now < prev {
			t.Fatalf("NowUS = %d after %d (%v): went back", now, prev, err)
		}
		prev = now
		time.Sleep(time.Millisecond)
	}
	if samples.Load() < 2 {
		t.Fatal("a stale sample was never refreshed")
	}
	now, _ := c.NowUS(ctx)
	if now < prev {
		t.Fatalf("NowUS = %d after %d: went back", now, prev)
	}
}

func TestClusterClockReportsAFailedFirstSample(t *testing.T) {
	boom := errors.New("no primary")
	c := newClusterClock(func(context.Context) (int64, error) { return 0, boom }, time.Second, time.Second)
	if _, err := c.NowUS(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("NowUS error = %v, want the sample's", err)
	}
	if c.sampleErr.Load() != 1 {
		t.Fatalf("sampleErr = %d, want 1", c.sampleErr.Load())
	}
}

// A sample whose reply was held up (a busy host) would put the clock off by
// half its round trip; it does not replace a sample with a shorter one.
func TestClusterClockKeepsTheShorterRoundTrip(t *testing.T) {
	const offsetUS = 5_000_000 // the server's clock runs 5 s ahead of ours
	var delay atomic.Int64
	var samples atomic.Int64
	c := newClusterClock(func(context.Context) (int64, error) {
		samples.Add(1)
		read := time.Now().UnixMicro() + offsetUS // the server reads its clock at once...
		time.Sleep(time.Duration(delay.Load()))   // ...and its reply arrives late
		return read, nil
	}, 10*time.Millisecond, 5*time.Second)
	ctx := context.Background()
	if _, err := c.NowUS(ctx); err != nil {
		t.Fatal(err)
	}
	delay.Store(int64(400 * time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for samples.Load() < 3 && time.Now().Before(deadline) { // two slow samples taken and refused
		time.Sleep(20 * time.Millisecond)
		if _, err := c.NowUS(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(450 * time.Millisecond) // the last slow sample has come back
	got, _ := c.NowUS(ctx)
	// The old rule (newest sample wins) would be 200 ms out; a busy host may add some scheduling noise.
	if off := got - (time.Now().UnixMicro() + offsetUS); off < -120_000 || off > 120_000 {
		t.Fatalf("after slow samples the clock is off by %d µs; a 400 ms round trip would put it 200 ms out", off)
	}
	if samples.Load() < 3 {
		t.Fatalf("only %d samples taken", samples.Load())
	}
}
