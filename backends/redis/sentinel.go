package redis

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// sentinelPoll is how often a Sentinel-mode backend asks the sentinels which
// node is the primary (§11).
const sentinelPoll = 250 * time.Millisecond

// sentinelClient is the Sentinel-mode client: go-redis's failover client,
// replaced by a new one as soon as the sentinels name another primary.
//
// go-redis moves on its own only on the sentinels' +switch-master, sent when
// the whole failover has ended, seconds after the promotion, while the old
// primary still takes writes that its demotion then discards (and on a dial,
// which a busy pool rarely makes). Polling GET-MASTER-ADDR-BY-NAME, which
// names the promoted replica at once, bounds that window by sentinelPoll.
type sentinelClient struct {
	newClient func() *goredis.Client // a fresh failover client
	sentinels *goredis.SentinelClient
	master    string
	current   atomic.Pointer[goredis.Client]
	closeOld  time.Duration // how long a replaced client may finish its calls

	mu      sync.Mutex
	addr    string // the primary the current client was made for ("" unknown)
	stop    chan struct{}
	stopped sync.WaitGroup
}

// newSentinelClient starts the watcher over opts' sentinels; sentinelOpts
// reach them (their first address; go-redis's failover client tries them all).
func newSentinelClient(newClient func() *goredis.Client, sentinelOpts *goredis.Options, master string,
	closeOld time.Duration) *sentinelClient {
	s := &sentinelClient{newClient: newClient, sentinels: goredis.NewSentinelClient(sentinelOpts), master: master,
		closeOld: closeOld, stop: make(chan struct{})}
	s.current.Store(newClient())
	s.stopped.Add(1)
	go s.watch()
	return s
}

// watch polls the sentinels until Close.
func (s *sentinelClient) watch() {
	defer s.stopped.Done()
	tick := time.NewTicker(sentinelPoll)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.check()
		}
	}
}

// check asks for the primary and replaces the client when it changed. A
// failed question changes nothing: the data calls report their own errors.
func (s *sentinelClient) check() {
	ctx, cancel := context.WithTimeout(context.Background(), sentinelPoll)
	defer cancel()
	hp, err := s.sentinels.GetMasterAddrByName(ctx, s.master).Result()
	if err != nil || len(hp) != 2 {
		return
	}
	addr := net.JoinHostPort(hp[0], hp[1])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr == "" || s.addr == addr {
		s.addr = addr
		return
	}
	s.addr = addr
	old := s.current.Swap(s.newClient())
	time.AfterFunc(s.closeOld, func() { _ = old.Close() })
}

// Process sends cmd through the current client.
func (s *sentinelClient) Process(ctx context.Context, cmd goredis.Cmder) error {
	return s.current.Load().Process(ctx, cmd)
}

// Pipeline returns a pipeline on the current client (auto-pipelining).
func (s *sentinelClient) Pipeline() goredis.Pipeliner {
	return s.current.Load().Pipeline()
}

// ScriptLoad loads a script on the current primary.
func (s *sentinelClient) ScriptLoad(ctx context.Context, script string) *goredis.StringCmd {
	return s.current.Load().ScriptLoad(ctx, script)
}

// Close stops the watcher and closes the clients.
func (s *sentinelClient) Close() error {
	close(s.stop)
	s.stopped.Wait()
	_ = s.sentinels.Close()
	return s.current.Load().Close()
}
