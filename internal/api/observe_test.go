package api

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"octo/internal/backend"
	"octo/internal/metrics"
)

// requestLines returns the access log lines written since from.
func (h *harness) requestLines(from int) []string {
	var lines []string
	for _, l := range strings.Split(h.log.String()[from:], "\n") {
		if strings.Contains(l, "msg=request") {
			lines = append(lines, l)
		}
	}
	return lines
}

// Every request, GETs too, logs exactly one line: user, route, status,
// bytes, duration, and the session when the route names one.
func TestAccessLog(t *testing.T) {
	h := newHarness(t)
	dur := `duration=[0-9.]+(ns|µs|ms|s)`
	s := h.startSession(h.tokMe, `{"command":["true"]}`)
	for _, tc := range []struct {
		method, path, tok, body string
		want                    string // regexp of the one line
	}{
		{"PUT", "/api/v1/files/logged.txt", h.tokMe, "hello",
			`user=` + h.me + ` route="PUT /api/v1/files/{path...}" path=/api/v1/files/logged.txt status=201 bytes=\d+ ` + dur + ` received=5`},
		{"GET", "/api/v1/files/logged.txt", h.tokMe, "",
			`user=` + h.me + ` route="GET /api/v1/files/{path...}" path=/api/v1/files/logged.txt status=200 bytes=5 ` + dur + `$`},
		{"GET", "/api/v1/status?user=" + h.other, h.tokAdmin, "",
			`user=` + h.other + ` caller=` + h.me + ` route="GET /api/v1/status" path=/api/v1/status status=200 bytes=\d+ ` + dur},
		{"GET", "/api/v1/sessions/" + s.ID, h.tokMe, "",
			`user=` + h.me + ` route="GET /api/v1/sessions/{id}" path=/api/v1/sessions/` + s.ID + ` status=200 bytes=\d+ ` + dur + ` session=` + s.ID},
		{"GET", "/api/v1/status", "", "",
			`msg=request route="GET /api/v1/status" path=/api/v1/status status=401 bytes=\d+ ` + dur + ` code=unauthorized`},
		{"GET", "/api/v1/nope", h.tokMe, "",
			`user=` + h.me + ` route=unmatched path=/api/v1/nope status=404 bytes=\d+ ` + dur + ` code=not_found`},
		{"GET", "/healthz", "", "", `msg=request route="GET /healthz" path=/healthz status=200 bytes=3 ` + dur},
	} {
		from := len(h.log.String())
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		h.do(tc.method, tc.path, tc.tok, body)
		lines := h.requestLines(from)
		if len(lines) != 1 || !regexp.MustCompile(tc.want).MatchString(lines[0]) {
			t.Errorf("%s %s: log lines %q\nwant one matching %s", tc.method, tc.path, lines, tc.want)
		}
	}
}

// With QuietReads, GET and HEAD lines are left out; the rest are logged.
func TestAccessLogQuietReads(t *testing.T) {
	h := newHarness(t)
	h.srv.cfg.QuietReads = true
	from := len(h.log.String())
	h.do("GET", "/api/v1/status", h.tokMe, nil)
	h.do("HEAD", "/api/v1/files/", h.tokMe, nil)
	h.do("PUT", "/api/v1/files/q.txt", h.tokMe, strings.NewReader("q"))
	lines := h.requestLines(from)
	if len(lines) != 1 || !strings.Contains(lines[0], `route="PUT /api/v1/files/{path...}"`) {
		t.Errorf("quiet reads: lines %q, want only the PUT's", lines)
	}
}

func scrape(t *testing.T, h *harness, c *http.Client, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://octo/metrics", nil)
	if c == h.client {
		req, _ = http.NewRequest("GET", h.url+"/metrics", nil)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /metrics is for admins (admin tokens; root or octo on the socket) and
// counts what happened, in a form promtool accepts.
func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t)
	h.srv.cfg.Metrics = metrics.New("test")
	h.srv.cfg.Pool.Connected = func(_ backend.User, ep backend.Endpoint) { h.srv.cfg.Metrics.AgentConnect(string(ep.Placement)) }
	h.srv.cfg.Pool.Called = h.srv.cfg.Metrics.AgentMethodCall
	h.do("GET", "/api/v1/status", h.tokMe, nil)
	h.do("GET", "/api/v1/status", h.tokMe, nil)
	h.do("PUT", "/api/v1/files/m.txt", h.tokMe, strings.NewReader("12345"))
	h.do("GET", "/api/v1/files/m.txt", h.tokMe, nil)
	h.do("GET", "/api/v1/files/missing.txt", h.tokMe, nil)
	h.startSession(h.tokMe, `{"command":["true"]}`)
	h.srv.uploads = newPerUser(0) // the next upload is one too many
	resp, b := h.do("PUT", "/api/v1/files/big.txt", h.tokMe, strings.NewReader("12345"))
	want(t, "PUT over the upload budget", resp, b, 429, "limit")

	if code, body := scrape(t, h, h.client, h.tokMe); code != http.StatusForbidden {
		t.Errorf("/metrics with a user's token: %d, want 403\n%s", code, body)
	}
	if code, _ := scrape(t, h, h.client, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	code, out := scrape(t, h, h.client, h.tokAdmin)
	if code != http.StatusOK {
		t.Fatalf("/metrics with an admin token: %d\n%s", code, out)
	}
	for _, want := range []string{
		`octo_http_requests_total{route="GET /api/v1/status",code="200"} 2`,
		`octo_http_requests_total{route="GET /api/v1/files/{path...}",code="404"} 1`,
		`octo_http_request_duration_seconds_count{route="PUT /api/v1/files/{path...}"} 2`,
		`octo_http_received_bytes_total{route="PUT /api/v1/files/{path...}"} 5`, // the refused body is never read,
		`octo_http_sent_bytes_total{route="GET /api/v1/files/{path...}"} `,
		`octo_agent_calls_total{route="GET /api/v1/status",result="ok"} 2`,
		`octo_agent_calls_total{route="GET /api/v1/files/{path...}",result="not_found"} 1`,
		`octo_agent_method_calls_total{method="Agent.Info",result="ok"} 2`,
		`octo_agent_method_calls_total{method="File.Open",result="not_found"} 1`,
		`octo_agent_method_calls_total{method="Session.Start",result="ok"} 1`,
		"\nocto_sessions_started_total 1\n",
		`octo_limit_hits_total{route="PUT /api/v1/files/{path...}",code="limit"} 1`,
		`octo_build_info{version="test"`,
		`octo_agent_connects_total{placement="system"} 1`,
		"\nocto_agent_starts_total 1\n", // seen by the status calls
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s\n%s", want, out)
		}
	}
	if code, out := scrape(t, h, h.unix, ""); code != http.StatusOK || !strings.Contains(out, "octo_http_requests_total") {
		t.Errorf("/metrics on the Unix socket as uid %d (root or octo): %d\n%s", os.Getuid(), code, out)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, b)
		}
	} else if os.Getenv("CI") == "true" {
		t.Error("promtool not installed (CI=true: .ci/setup-e2e.sh installs it)")
	}
}

// The cost of observing a request: route lookup, counting, metrics and the
// access log line (text to io.Discard), against the bare handler.
func BenchmarkObserve(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	h := func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.route = servedRoute(r) // as target does
		}
		w.Write(body)
	}
	r := httptest.NewRequest("GET", "/api/v1/files/abc", nil)
	w := httptest.NewRecorder()
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"bare", Config{}},
		{"metrics", Config{Metrics: metrics.New("b"), QuietReads: true}},
		{"metrics+log", Config{Metrics: metrics.New("b"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}},
	} {
		s := New(bc.cfg)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w.Body.Reset()
				if bc.name == "bare" {
					h(w, r)
				} else {
					s.observe(w, r, h)
				}
			}
		})
	}
}

// A body copied from a file keeps the server's ReadFrom (sendfile) path
// and is counted; so are bytes read from the request body.
func TestObserveCountsReadFrom(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 100<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	var log lockedWriter
	log.b = &strings.Builder{}
	s := New(Config{Log: slog.New(slog.NewTextHandler(&log, nil))})
	usedReadFrom := false
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.observe(w, r, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			f, err := os.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			_, usedReadFrom = w.(io.ReaderFrom)
			io.Copy(w, f)
		})
	}))
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/x", "text/plain", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 100<<10 || !usedReadFrom {
		t.Fatalf("got %d bytes, ReadFrom %v", n, usedReadFrom)
	}
	if got := log.String(); !strings.Contains(got, "bytes=102400") || !strings.Contains(got, "received=3") {
		t.Errorf("log %q, want bytes=102400 and received=3", got)
	}
}
