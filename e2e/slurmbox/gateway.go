package slurmbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"octo/internal/gateway"
)

// Gateway is an octo gateway listening on the controller's address and
// checking agents with the cluster's squeue, sinfo and unmunge.
type Gateway struct {
	*gateway.Gateway
	Addr string            // host:port agents dial
	UIDs map[string]uint32 // of the cluster's users
	stop func()
}

// StartGateway runs a gateway with a fresh CA until the test ends.
func StartGateway(t testing.TB, c *Cluster) *Gateway {
	return RunGateway(t, c, t.TempDir(), CtlAddr+":0")
}

// Stop stops the gateway (as a control plane restart would); it is safe to
// call twice.
func (g *Gateway) Stop() { g.stop() }

// RunGateway runs a gateway on addr with the CA in dir (made if absent)
// until Stop or the end of the test.
func RunGateway(t testing.TB, c *Cluster, dir, addr string) *Gateway {
	t.Helper()
	ca, err := gateway.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{UIDs: map[string]uint32{}}
	for _, u := range c.Users {
		out, err := c.Run(context.Background(), "", "id", "-u", u)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		g.UIDs[u] = uint32(n)
	}
	g.Gateway, err = gateway.New(gateway.Config{
		CA: ca, Hosts: []string{CtlAddr}, Verifier: gateway.SlurmVerifier{R: c.Runner("")},
		LookupUID: func(u string) (uint32, error) {
			if n, ok := g.UIDs[u]; ok {
				return n, nil
			}
			return 0, errors.New("no such user")
		},
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := c.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, ln) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}
