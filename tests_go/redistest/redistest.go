// Package redistest runs a private redis-server on a free loopback port for
// Go tests, and provides a TCP listener that accepts connections but never
// answers (a hung Redis).
//
// Without redis-server the tests that need it are skipped, except when the
// environment has CI=true: then a missing server is a test failure, so CI can
// never pass by skipping. REDIS_SERVER names the binary if it is not on PATH.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a starting server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process listening on 127.0.0.1:Port, with
// persistence off and its files in a temporary directory.
type Server struct {
	Port int    // TCP port on 127.0.0.1
	Addr string // "127.0.0.1:<Port>"

	bin  string
	dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd  // nil while stopped
	waitCh chan error // receives the exit status of cmd
}

// Binary returns the redis-server executable: $REDIS_SERVER, else the one on
// PATH, else /usr/bin/redis-server. When none exists the test is skipped, or
// fails when CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("REDIS_SERVER")}
	if p, err := exec.LookPath("redis-server"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/redis-server")
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 { // #nosec G703 -- test helper: $REDIS_SERVER, PATH or a fixed path, from the developer running the tests
			return c
		}
	}
	msg := "redis-server not found (install it or set REDIS_SERVER)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true forbids skipping")
	}
	t.Skip(msg)
	return ""
}

// Start starts a private redis-server and registers its shutdown with
// t.Cleanup. extra are additional "--name value" arguments for the server
// (for example "--requirepass", "pw").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return startOn(t, FreePort, extra...)
}

// startOn is Start with the port chooser freePort.
func startOn(t testing.TB, freePort func() (int, error), extra ...string) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{bin: bin, dir: t.TempDir()}
	var lastErr error
	// A free port can be taken between probing and binding: try a few.
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.args = append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no",
			"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
		}, extra...)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// start launches the process and waits until it answers PING.
func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...) // #nosec G204 -- test helper: the redis-server that Binary found, arguments built by Start for the calling test
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited during start (%v); log: %s", err, s.logTail())
		default:
		}
		if ping(s.Addr, s.password()) == nil {
			s.mu.Lock()
			s.cmd, s.waitCh = cmd, exited
			s.mu.Unlock()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server did not answer PING within %v; log: %s", startTimeout, s.logTail())
}

// password returns the --requirepass argument, if any, for the readiness PING.
func (s *Server) password() string {
	for i := 0; i+1 < len(s.args); i++ {
		if s.args[i] == "--requirepass" {
			return s.args[i+1]
		}
	}
	return ""
}

// URL returns "redis://127.0.0.1:<port>" (without credentials).
func (s *Server) URL() string { return "redis://" + s.Addr }

// Client returns a plain go-redis client for inspecting the server (INFO,
// keys, SCRIPT FLUSH), closed at the end of the test.
func (s *Server) Client(t testing.TB) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, Password: s.password(), DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s) and waits for
// it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, wait := s.cmd, s.waitCh
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-wait:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-wait
	}
}

// Kill ends the server with SIGKILL (a crash: no shutdown handshake) and
// waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, wait := s.cmd, s.waitCh
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-wait
}

// Restart starts a stopped server again on the same port, with an empty
// dataset and an empty script cache.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	// The port was just released; retry briefly in case the kernel lags.
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr, err)
}

// logTail returns the last lines of the server log, for start failures.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// ping sends an inline PING (after AUTH when password is set) and expects +PONG.
func ping(addr, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := fmt.Fprintf(conn, "AUTH %s\r\n", password); err != nil {
			return err
		}
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// HungListener accepts TCP connections on 127.0.0.1 and never writes a byte:
// a server that is up at the TCP level but does not answer. It counts the
// connections it accepted, so a test can tell whether a client dialled.
type HungListener struct {
	Addr string // "127.0.0.1:<port>"

	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
	done     chan struct{}
}

// NewHungListener starts a HungListener closed by t.Cleanup.
func NewHungListener(t testing.TB) *HungListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: listen: %v", err)
	}
	h := &HungListener{Addr: ln.Addr().String(), ln: ln, done: make(chan struct{})}
	go h.serve()
	t.Cleanup(h.Close)
	return h
}

func (h *HungListener) serve() {
	defer close(h.done)
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.accepted.Add(1)
		h.mu.Lock()
		h.conns = append(h.conns, c) // held open, never read or written
		h.mu.Unlock()
	}
}

// URL returns "redis://<Addr>".
func (h *HungListener) URL() string { return "redis://" + h.Addr }

// Accepted returns the number of connections accepted so far.
func (h *HungListener) Accepted() int64 { return h.accepted.Load() }

// Close stops accepting and closes every held connection.
func (h *HungListener) Close() {
	_ = h.ln.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.conns = nil
}
