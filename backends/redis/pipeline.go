package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Auto-pipelining bounds (docs/redis-backend.md, "Pipelining").
const (
	// pipeMaxBatch is the most script calls written as one pipeline.
	pipeMaxBatch = 64
	// pipeMaxFlights is the most pipelines in flight at once, each on its
	// own pooled connection.
	pipeMaxFlights = 4
)

// errPipelinePanic fails the calls of a pipeline whose sending panicked.
var errPipelinePanic = errors.New("redis backend: pipeline panicked")

// pipelineClient is what auto-pipelining needs beyond redisClient: a way to
// send several commands in one write (*goredis.Client, sentinelClient).
type pipelineClient interface {
	Pipeline() goredis.Pipeliner
}

// Request states. A request is queued until a flight takes it; a caller
// whose context ends while it is still queued abandons it, and no flight
// will send it.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// pipeReq is one Evaluate's script call waiting for, or riding in, a pipeline.
type pipeReq struct {
	ctx   context.Context // the caller's, with its call deadline
	cmd   *goredis.IntSliceCmd
	state atomic.Int32
	done  chan struct{} // closed when cmd has its reply or error
}

// autoPipeline writes concurrent script calls to one Redis as pipelines: the
// first caller that finds a free flight sends everything queued (up to
// pipeMaxBatch commands) and keeps sending until its own call is answered;
// whoever arrives meanwhile is queued for the next pipeline. Nothing waits to
// fill a batch, so a lone call is sent at once, as a plain command.
//
// Every command is sent at most once: go-redis retries are off for pipelines
// as for single commands (Options.MaxRetries -1), and only commands that
// Redis refused with NOSCRIPT, which proves they did not run, are sent again,
// once, after a SCRIPT LOAD.
type autoPipeline struct {
	client redisClient
	pipe   pipelineClient
	reload func(ctx context.Context) error // SCRIPT LOAD of the backend's script

	mu      sync.Mutex
	queue   []*pipeReq
	flights int // pipelines being sent or owned by a flushing goroutine
}

// newAutoPipeline returns nil when client cannot pipeline.
func newAutoPipeline(client redisClient, reload func(ctx context.Context) error) *autoPipeline {
	pc, ok := client.(pipelineClient)
	if !ok {
		return nil
	}
	return &autoPipeline{client: client, pipe: pc, reload: reload}
}

// do sends args (an EVALSHA) as part of a pipeline and returns its command
// once answered. ctx must carry the call's deadline. A caller whose ctx ends
// before its command was taken for sending gets ctx's error and the command
// is never sent; once taken, do waits for the reply, which the pipeline's
// deadline (the earliest of its callers') bounds.
func (p *autoPipeline) do(ctx context.Context, args []interface{}) (*goredis.IntSliceCmd, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &pipeReq{ctx: ctx, cmd: goredis.NewIntSliceCmd(ctx, args...), done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, r)
	lead := p.flights < pipeMaxFlights
	if lead {
		p.flights++
	}
	p.mu.Unlock()
	if lead {
		p.lead(r)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return nil, ctx.Err()
		}
		<-r.done
	}
	return r.cmd, nil
}

// lead sends pipelines with the flight its caller holds until the caller's
// own request r is answered (or taken by another flight), then hands the
// flight to a goroutine if requests are still queued, else gives it back.
func (p *autoPipeline) lead(r *pipeReq) {
	for {
		batch := p.take()
		if batch == nil {
			return // flight given back
		}
		p.send(batch)
		if r.state.Load() != reqQueued {
			break
		}
	}
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.flights--
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	go p.drain()
}

// drain sends pipelines until the queue is empty, then gives its flight back.
func (p *autoPipeline) drain() {
	for {
		batch := p.take()
		if batch == nil {
			return
		}
		p.send(batch)
	}
}

// take removes up to pipeMaxBatch live requests from the front of the queue
// and marks them taken. With none left it gives the caller's flight back and
// returns nil: under the same lock as do's check, so no request is stranded.
func (p *autoPipeline) take() []*pipeReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batch []*pipeReq
	n := 0
	for n < len(p.queue) && len(batch) < pipeMaxBatch {
		r := p.queue[n]
		p.queue[n] = nil
		n++
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			if batch == nil {
				batch = make([]*pipeReq, 0, min(pipeMaxBatch, len(p.queue)-n+1))
			}
			batch = append(batch, r)
		}
	}
	rest := copy(p.queue, p.queue[n:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	if batch == nil {
		p.flights--
	}
	return batch
}

// send writes batch as one pipeline (one command: a plain call on its
// caller's context), reloads the script once if Redis lost it, resends the
// commands that got NOSCRIPT, and wakes every caller.
func (p *autoPipeline) send(batch []*pipeReq) {
	defer func() {
		// A panic below (a go-redis bug) must not leave callers waiting
		// forever nor kill the process from a drain goroutine: it fails
		// the batch's calls instead (Redis unavailable, class "unexpected").
		if rec := recover(); rec != nil {
			for _, r := range batch {
				r.cmd.SetErr(errPipelinePanic)
			}
		}
		for _, r := range batch {
			close(r.done)
		}
	}()
	ctx, cancel := batchContext(batch)
	defer cancel()
	p.exec(ctx, batch)
	var again []*pipeReq
	for _, r := range batch {
		if err := r.cmd.Err(); err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, r)
		}
	}
	if len(again) == 0 {
		return
	}
	if err := p.reload(ctx); err != nil {
		for _, r := range again {
			r.cmd.SetErr(err)
		}
		return
	}
	for _, r := range again {
		r.cmd = goredis.NewIntSliceCmd(r.ctx, r.cmd.Args()...)
	}
	p.exec(ctx, again)
}

// exec sends batch's commands in one round trip; errors land in the commands.
func (p *autoPipeline) exec(ctx context.Context, batch []*pipeReq) {
	if len(batch) == 1 {
		_ = p.client.Process(ctx, batch[0].cmd)
		return
	}
	pl := p.pipe.Pipeline()
	for _, r := range batch {
		_ = pl.Process(ctx, r.cmd)
	}
	_, _ = pl.Exec(ctx)
}

// batchContext is the context a batch is sent with: a lone caller's own
// (so its cancellation reaches go-redis as without pipelining), else one
// that ends at the earliest of the callers' deadlines, so no call outlives
// its own budget.
func batchContext(batch []*pipeReq) (context.Context, context.CancelFunc) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	var earliest time.Time
	for _, r := range batch {
		if d, ok := r.ctx.Deadline(); ok && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	if earliest.IsZero() {
		return context.WithCancel(context.Background())
	}
	return context.WithDeadline(context.Background(), earliest)
}
