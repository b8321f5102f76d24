package api

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"octo/internal/agentrpc"
)

// The control plane's cost is BenchmarkStatus minus BenchmarkAgentInfoDirect:
// both ask the same real agent for Info over its Unix socket; the first goes
// through HTTP (client included), token check, routing and the pool.

func BenchmarkAgentInfoDirect(b *testing.B) {
	h := newHarness(b)
	c, err := agentrpc.Dial(context.Background(), "unix", filepath.Join(h.socketDir, "agent-"+h.me+".sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := c.Info(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAgentOpenDirect is BenchmarkFileGet1K's agent call without the control plane.
func BenchmarkAgentOpenDirect(b *testing.B) {
	h := newHarness(b)
	os.WriteFile(filepath.Join(h.wsMe, "1k.bin"), make([]byte, 1024), 0o644)
	c, err := agentrpc.Dial(context.Background(), "unix", filepath.Join(h.socketDir, "agent-"+h.me+".sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if r, err := c.Open(context.Background(), agentrpc.OpenRequest{Path: "1k.bin", Inline: agentrpc.MaxInline, FD: true}); err != nil || len(r.Data) != 1024 {
			b.Fatal(err)
		}
	}
}

func (h *harness) benchGet(b *testing.B, path string, wantLen int) {
	req, _ := http.NewRequest("GET", h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	for b.Loop() {
		resp, err := h.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (wantLen >= 0 && int(n) != wantLen) {
			b.Fatalf("GET %s: %d, %d bytes", path, resp.StatusCode, n)
		}
	}
}

func BenchmarkStatus(b *testing.B) {
	h := newHarness(b)
	h.benchGet(b, "/api/v1/status", -1)
}

func BenchmarkFileGet1K(b *testing.B) {
	h := newHarness(b)
	os.WriteFile(filepath.Join(h.wsMe, "1k.bin"), make([]byte, 1024), 0o644)
	h.benchGet(b, "/api/v1/files/1k.bin", 1024)
}

func BenchmarkFileGet1KParallel(b *testing.B) {
	h := newHarness(b)
	os.WriteFile(filepath.Join(h.wsMe, "1k.bin"), make([]byte, 1024), 0o644)
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", h.url+"/api/v1/files/1k.bin", nil)
		req.Header.Set("Authorization", "Bearer "+h.tokMe)
		for pb.Next() {
			resp, err := h.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkSessionStart(b *testing.B) {
	h := newHarness(b)
	for b.Loop() {
		req, _ := http.NewRequest("POST", h.url+"/api/v1/sessions", strings.NewReader(`{"command":["true"]}`))
		req.Header.Set("Authorization", "Bearer "+h.tokMe)
		resp, err := h.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("start: %d", resp.StatusCode)
		}
	}
}
