package main

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"octo/internal/metrics"
)

// [server] metrics_listen serves /metrics without authentication, and
// nothing else; a non-loopback address is warned about.
func TestMetricsListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m := metrics.New("test")
	m.SessionStarted()
	stop := serveMetrics(ln, m, slog.New(slog.NewTextHandler(&logs, nil)))
	defer stop()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "\nocto_sessions_started_total 1\n") {
		t.Errorf("GET /metrics: %d\n%s", code, body)
	}
	if code, _ := get("/api/v1/status"); code != 404 {
		t.Errorf("GET /api/v1/status on the metrics listener: %d, want 404", code)
	}
	if strings.Contains(logs.String(), "not a loopback") {
		t.Errorf("warned about a loopback address: %s", logs.String())
	}
	if _, err := serveMetricsListener("127.0.0.1:"+strings.Split(ln.Addr().String(), ":")[1], m, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "server.metrics_listen") {
		t.Errorf("metrics_listen on a busy port: %v, want an error naming the key", err)
	}
}
