//go:build linux

package e2e

import (
	"context"
	"net/http"
	"testing"
)

// BenchmarkStatusWarm is GET /api/v1/status through the control plane to a
// running agent, over a fresh TCP connection each time (the box's loopback).
func BenchmarkStatusWarm(b *testing.B) {
	bx := setup(b)
	c := newClient(b, bx, "bob")
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	}
}

// BenchmarkStatusColdAgent is the same request when the user's agent is not
// running: systemd starts octo-agent@bob.service from its socket (the cost
// a user pays after every idle exit).
func BenchmarkStatusColdAgent(b *testing.B) {
	bx := setup(b)
	c := newClient(b, bx, "bob")
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// reset-failed also resets the start limit (60 per 10s), which a
		// benchmark run would otherwise exhaust.
		if out, err := bx.Sh(ctx, "systemctl stop octo-agent@bob.service && systemctl reset-failed octo-agent@bob.service octo-agent@bob.socket"); err != nil {
			b.Fatalf("stop agent: %v\n%s", err, out)
		}
		b.StartTimer()
		c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	}
	b.StopTimer()
	if got := isActive(ctx, bx, "octo-agent@bob.service"); got != "active" {
		b.Fatalf("after the cold request octo-agent@bob.service is %q", got)
	}
}
