package redis

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// panicClient panics where go-redis would send a command or a pipeline.
type panicClient struct{ *goredis.Client }

func (panicClient) Process(context.Context, goredis.Cmder) error { panic("bug") }

func (c panicClient) Pipeline() goredis.Pipeliner { return panicPipe{c.Client.Pipeline()} }

// panicPipe panics on Exec.
type panicPipe struct{ goredis.Pipeliner }

func (panicPipe) Exec(context.Context) ([]goredis.Cmder, error) { panic("bug") }

// A panic while sending fails the calls of that pipeline, wakes their
// callers and gives the flight back; it is not re-raised (a drain goroutine
// would take the process down).
func TestAutoPipelinePanicFailsTheCallsAndFreesTheFlight(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}) // never dialled: Process panics first
	t.Cleanup(func() { _ = c.Close() })
	p := newAutoPipeline(panicClient{c}, func(context.Context) error { return nil })
	if p == nil {
		t.Fatal("newAutoPipeline: nil for a client that can pipeline")
	}
	var wg sync.WaitGroup
	for i := 0; i < 3*pipeMaxFlights; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd, err := p.do(ctx, []interface{}{"evalsha", "0", int64(0)})
			if err != nil || !errors.Is(cmd.Err(), errPipelinePanic) {
				t.Errorf("do: %v, command error %v; want errPipelinePanic on the command", err, cmd.Err())
			}
		}()
	}
	wg.Wait()
	// Flights still sending are handed back right after waking their callers.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		flights, queued := p.flights, len(p.queue)
		p.mu.Unlock()
		if flights == 0 && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after every call returned: %d flights held, %d queued", flights, queued)
		}
		time.Sleep(time.Millisecond)
	}
}
