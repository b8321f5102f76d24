package agentrpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// Echo is a net/rpc service for the codec tests.
type Echo struct{}

func (Echo) Path(req *agentrpc.PathRequest, reply *agentrpc.FileInfo) error {
	reply.Name = req.Path
	return nil
}

// echoClient serves Echo with the standard net/rpc server on a Unix socket
// and returns a Client connected to it.
func echoClient(t *testing.T) *agentrpc.Client {
	t.Helper()
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", Echo{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "echo.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go agentrpc.Accept(srv, ln)
	c, err := agentrpc.Dial(context.Background(), "unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A request that no other call follows must still be written at once, and
// requests queued behind each other (written in one flush) must all be
// answered, each with its own reply: a request left in the buffer would hang
// its caller until the timeout.
func TestClientCodecFlushes(t *testing.T) {
	c := echoClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, conc := range []int{1, 2, 64} {
		t.Run(fmt.Sprint("concurrency=", conc), func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, conc)
			for g := range conc {
				wg.Go(func() {
					for i := range 200 {
						want := fmt.Sprintf("g%d/%d", g, i)
						var got agentrpc.FileInfo
						if err := c.Call(ctx, "Echo.Path", &agentrpc.PathRequest{Path: want}, &got); err != nil {
							errs <- fmt.Errorf("call %s: %w", want, err)
							return
						}
						if got.Name != want {
							errs <- fmt.Errorf("reply = %q, want %q", got.Name, want)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// After the agent closes the connection, calls fail with ErrConnLost
// instead of waiting on a request that can no longer be flushed.
func TestClientCodecConnLost(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "closing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if sc, err := ln.Accept(); err == nil {
			sc.Close()
		}
	}()
	c, err := agentrpc.Dial(context.Background(), "unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got agentrpc.FileInfo
	for i := range 3 {
		err := c.Call(ctx, "Echo.Path", &agentrpc.PathRequest{Path: "x"}, &got)
		if !errorsIsConnLost(err) {
			t.Fatalf("call %d after close: err = %v, want ErrConnLost", i, err)
		}
	}
}

func errorsIsConnLost(err error) bool { return errors.Is(err, agentrpc.ErrConnLost) }
