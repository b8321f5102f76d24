package metrics_test

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"octo/internal/metrics"
)

func sample() *metrics.Metrics {
	m := metrics.New("1.2.3")
	m.Request("GET /api/v1/status", 200, 3*time.Millisecond, 0, 512)
	m.Request("GET /api/v1/status", 200, 40*time.Millisecond, 0, 512)
	m.Request("PUT /api/v1/files/{path...}", 429, time.Second, 10, 80)
	m.Request(`odd "route"\`+"\n", 404, time.Microsecond, 0, 0)
	m.AgentCall("GET /api/v1/status", "ok")
	m.AgentCall("GET /api/v1/files/{path...}", "not_found")
	m.AgentConnect("system")
	m.AgentSeen("alice", 10)
	m.AgentSeen("alice", 10)
	m.AgentSeen("alice", 11)
	m.SessionStarted()
	m.LimitHit("PUT /api/v1/files/{path...}", "limit")
	return m
}

func TestExposition(t *testing.T) {
	var b bytes.Buffer
	if _, err := sample().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`octo_build_info{version="1.2.3",goversion="go`,
		`octo_http_requests_total{route="GET /api/v1/status",code="200"} 2`,
		`octo_http_requests_total{route="odd \"route\"\\\n",code="404"} 1`,
		`octo_http_request_duration_seconds_bucket{route="GET /api/v1/status",le="0.0025"} 0`,
		`octo_http_request_duration_seconds_bucket{route="GET /api/v1/status",le="0.005"} 1`,
		`octo_http_request_duration_seconds_bucket{route="GET /api/v1/status",le="0.05"} 2`,
		`octo_http_request_duration_seconds_bucket{route="GET /api/v1/status",le="+Inf"} 2`,
		`octo_http_request_duration_seconds_bucket{route="PUT /api/v1/files/{path...}",le="1"} 1`,
		`octo_http_request_duration_seconds_count{route="GET /api/v1/status"} 2`,
		`octo_http_received_bytes_total{route="PUT /api/v1/files/{path...}"} 10`,
		`octo_http_sent_bytes_total{route="GET /api/v1/status"} 1024`,
		`octo_agent_calls_total{route="GET /api/v1/files/{path...}",result="not_found"} 1`,
		`octo_agent_connects_total{placement="system"} 1`,
		"\nocto_agent_starts_total 2\n",
		"\nocto_sessions_started_total 1\n",
		`octo_limit_hits_total{route="PUT /api/v1/files/{path...}",code="limit"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s\n%s", want, out)
		}
	}
	if empty := new(bytes.Buffer); true {
		metrics.New("x").WriteTo(empty)
		if !strings.Contains(empty.String(), "\nocto_sessions_started_total 0\n") {
			t.Errorf("a fresh counter without labels is not shown as 0:\n%s", empty)
		}
	}
}

// promtool, Prometheus's own checker, accepts the exposition.
func TestPromtoolAccepts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (CI=true: .ci/setup-e2e.sh installs Debian's prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for name, m := range map[string]*metrics.Metrics{"fresh": metrics.New("dev"), "used": sample()} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if ct := rec.Header().Get("Content-Type"); ct != metrics.ContentType {
			t.Errorf("Content-Type %q, want %q", ct, metrics.ContentType)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = rec.Body
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s metrics: promtool check metrics: %v\n%s", name, err, out)
		}
	}
}

func TestNilCountsNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Request("x", 200, time.Second, 1, 1)
	m.AgentCall("a", "ok")
	m.AgentConnect("system")
	m.AgentSeen("alice", 1)
	m.SessionStarted()
	m.LimitHit("x", "limit")
}

func BenchmarkRequest(b *testing.B) {
	m := metrics.New("dev")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("GET /api/v1/files/{path...}", 200, time.Millisecond, 0, 1024)
		}
	})
}
