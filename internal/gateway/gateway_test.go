package gateway

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestHandshakeCapPerHost: connections from one address that never
// finish their handshake hold at most MaxHandshakesPerHost slots; the next
// is closed at once.
func TestHandshakeCapPerHost(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{CA: ca, Hosts: []string{"127.0.0.1"}, Verifier: SlurmVerifier{},
		LookupUID: func(string) (uint32, error) { return 0, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for i := 0; i < MaxHandshakesPerHost; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// The gateway counts a connection when it accepts it: wait for all.
	for deadline := time.Now().Add(5 * time.Second); ; {
		g.hsMu.Lock()
		n := g.handshakes["127.0.0.1"]
		g.hsMu.Unlock()
		if n == MaxHandshakesPerHost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handshakes in progress = %d, want %d", n, MaxHandshakesPerHost)
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("connection over the cap: read %d bytes, %v; want it closed at once", n, err)
	}
	// A slot freed lets the next one in (its handshake then waits).
	silent[0].Close()
	silent = silent[1:]
	for deadline := time.Now().Add(5 * time.Second); ; {
		g.hsMu.Lock()
		n := g.handshakes["127.0.0.1"]
		g.hsMu.Unlock()
		if n < MaxHandshakesPerHost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot was not freed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
