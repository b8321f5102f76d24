package api

import (
	"context"
	"net"
	"net/http"
	"net/rpc"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// LazyAgent answers every Session.ReadOutput at once with nothing and
// Done=false, ignoring Wait, as a broken or hostile agent might.
type LazyAgent struct{ calls *atomic.Int64 }

func (a LazyAgent) ReadOutput(req *agentrpc.OutputRequest, out *agentrpc.Output) error {
	a.calls.Add(1)
	out.Offset, out.Next = req.Offset, req.Offset
	return nil
}

// replaceAgent points socket_dir/agent-NAME.sock at a net/rpc server with
// the given Session service.
func (h *harness) replaceAgent(name string, session any) {
	h.replaceAgentService(name, "Session", session)
}

// replaceAgentService points socket_dir/agent-NAME.sock at a net/rpc server
// with one service.
func (h *harness) replaceAgentService(name, service string, rcvr any) {
	srv := rpc.NewServer()
	if err := srv.RegisterName(service, rcvr); err != nil {
		h.t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(h.t.TempDir(), "fake.sock"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ln.Close() })
	go agentrpc.Accept(srv, ln)
	os.Remove(filepath.Join(h.socketDir, "agent-"+name+".sock"))
	h.linkAgent(name, ln.Addr().String())
}

// A follow stream backs off when the agent answers long polls at once with
// nothing, instead of spinning through agent calls.
func TestFollowDoesNotSpin(t *testing.T) {
	h := newHarness(t)
	var calls atomic.Int64
	h.replaceAgent(h.other, LazyAgent{&calls})
	for _, accept := range []string{"", "text/event-stream"} {
		calls.Store(0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/api/v1/sessions/s1/output?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+h.tokOther)
		req.Header.Set("Accept", accept)
		resp, err := h.client.Do(req)
		if err == nil {
			for err == nil {
				_, err = resp.Body.Read(make([]byte, 4096))
			}
			resp.Body.Close()
		}
		cancel()
		time.Sleep(50 * time.Millisecond) // the handler notices the client left
		// Backoff 50ms, 100ms, 200ms, 400ms...: about 6 calls in a second.
		if n := calls.Load(); n < 2 || n > 12 {
			t.Errorf("Accept %q: %d agent calls in a one-second follow, want 2-12 (backing off)", accept, n)
		}
	}
}
