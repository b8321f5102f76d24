package agent

import (
	"context"
	"net"
	"net/rpc"
	"sync"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// Gate is a service whose Wait calls block until the gate opens.
type Gate struct {
	open    chan struct{}
	waiting sync.WaitGroup
}

func (g *Gate) Wait(_ *int, reply *int) error {
	g.waiting.Done()
	<-g.open
	*reply = 1
	return nil
}

func (g *Gate) Echo(n *int, reply *int) error {
	*reply = *n
	return nil
}

// startPool serves a Gate through a worker pool on one end of a socket
// pair and returns an agentrpc client on the other.
func startPool(t *testing.T) (*Gate, *agentrpc.Client, *workerPool, <-chan struct{}) {
	t.Helper()
	g := &Gate{open: make(chan struct{})}
	srv := rpc.NewServer()
	if err := srv.Register(g); err != nil {
		t.Fatal(err)
	}
	a, b := unixPair(t)
	p := newWorkerPool(srv, newServerCodec(a))
	served := make(chan struct{})
	go func() { p.serve(); close(served) }()
	c := agentrpc.NewClient(b)
	t.Cleanup(func() { c.Close() })
	return g, c, p, served
}

func unixPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("unix", t.TempDir()+"/p.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// Calls blocked in their workers do not stop the connection: other calls
// are read and answered meanwhile, and the blocked ones answer once let go.
// Afterwards the pool keeps at most maxIdleWorkers.
func TestWorkerPoolBlockedCallsDoNotStall(t *testing.T) {
	g, c, p, _ := startPool(t)
	const blocked = 3 * maxIdleWorkers
	g.waiting.Add(blocked)
	var calls []chan error
	replies := make([]int, blocked)
	for i := range blocked {
		calls = append(calls, goCall(c, "Gate.Wait", new(int), &replies[i]))
	}
	waitWithin(t, &g.waiting) // all are running at once, each in its own worker
	for i := range 20 {
		var got int
		if err := callWithin(c, "Gate.Echo", &i, &got); err != nil || got != i {
			t.Fatalf("Echo(%d) while %d calls block: got %d, %v; want %d, nil", i, blocked, got, err, i)
		}
	}
	close(g.open)
	for i, call := range calls {
		if err := <-call; err != nil || replies[i] != 1 {
			t.Fatalf("blocked call %d: got %d, %v; want 1, nil", i, replies[i], err)
		}
	}
	// Idle workers beyond the bound exit as their calls end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		workers, idle := p.workers, p.idle
		p.mu.Unlock()
		if workers <= maxIdleWorkers && idle == workers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: got %d workers (%d idle), want at most %d, all idle", workers, idle, maxIdleWorkers)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// When the client goes, serving ends only after the calls in flight have
// finished, and every worker exits.
func TestWorkerPoolEndsAfterCallsInFlight(t *testing.T) {
	g, c, p, served := startPool(t)
	g.waiting.Add(2)
	goCall(c, "Gate.Wait", new(int), new(int))
	goCall(c, "Gate.Wait", new(int), new(int))
	waitWithin(t, &g.waiting)
	c.Close()
	select {
	case <-served:
		t.Fatal("serve returned while calls were running")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the calls ended")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers != 0 {
		t.Fatalf("workers after serve: got %d, want 0", p.workers)
	}
}

// A request for a method that does not exist gets an error reply, and the
// connection goes on, as with rpc.Server.ServeCodec.
func TestWorkerPoolBadMethodKeepsConnection(t *testing.T) {
	_, c, _, _ := startPool(t)
	if err := callWithin(c, "Gate.Nope", new(int), new(int)); err == nil {
		t.Fatal("Gate.Nope: got nil error, want one")
	}
	n := 7
	var got int
	if err := callWithin(c, "Gate.Echo", &n, &got); err != nil || got != n {
		t.Fatalf("Echo after a bad call: got %d, %v; want %d, nil", got, err, n)
	}
}

// callWithin is c.Call that gives up after 10 s, so that a stalled
// connection fails the test instead of hanging it.
func callWithin(c *agentrpc.Client, method string, args, reply any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Call(ctx, method, args, reply)
}

// goCall starts a call and returns where its error will arrive.
func goCall(c *agentrpc.Client, method string, args, reply any) chan error {
	errc := make(chan error, 1)
	go func() { errc <- c.Call(context.Background(), method, args, reply) }()
	return errc
}

func waitWithin(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("calls did not all start within 10s: they are not running concurrently")
	}
}
