package api

import (
	"context"
	"io"
	"testing"

	"octo/internal/client"
)

// BenchmarkRunTrue is what `octo run -- true` asks of the API: start and
// attach in one request, read the output to its end, get the exit status.
// Compare with BenchmarkSessionStart, the start alone.
func BenchmarkRunTrue(b *testing.B) {
	h := newHarness(b)
	c, err := client.NewURL(h.url, h.tokMe)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		id, a, _, err := c.StartAttached(ctx, client.StartRequest{Command: []string{"true"}}, client.AttachOptions{CloseStdin: true})
		if err != nil || a == nil {
			b.Fatalf("start attached: %v, %v", a, err)
		}
		io.Copy(io.Discard, a)
		a.Close()
		if s, err := c.Session(ctx, id); err != nil || s.ExitStatus() != 0 {
			b.Fatalf("session %+v, %v", s, err)
		}
	}
}
