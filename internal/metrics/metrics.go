// Package metrics counts what the control plane does and serves the counts
// in the Prometheus text exposition format, written by hand.
package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"octo/internal/agentrpc"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// durationBounds are the request duration buckets, in seconds: API calls
// take milliseconds, uploads and output streams up to minutes.
var durationBounds = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// Metrics are the control plane's counters. Every method is safe for
// concurrent use; a nil *Metrics counts nothing.
type Metrics struct {
	version string

	requests     *counters
	duration     *histograms
	received     *counters
	sent         *counters
	agentCalls   *counters
	agentMethods *counters
	agentConns   *counters
	agentStarts  *counters
	sessions     *counters
	limitHits    *counters
	startsMu     sync.Mutex
	agentLastPID map[string]int // user -> agent PID last seen
}

// New returns empty counters for a control plane of the given version.
func New(version string) *Metrics {
	return &Metrics{
		version:      version,
		requests:     newCounters("octo_http_requests_total", "HTTP requests answered, by route and status code.", "route", "code"),
		duration:     newHistograms("octo_http_request_duration_seconds", "Time to answer an HTTP request, by route.", durationBounds, "route"),
		received:     newCounters("octo_http_received_bytes_total", "Request body bytes read, by route.", "route"),
		sent:         newCounters("octo_http_sent_bytes_total", "Response body bytes written, by route.", "route"),
		agentCalls:   newCounters("octo_agent_calls_total", "Calls to agents, by the API route that made them and result (ok or the error code).", "route", "result"),
		agentMethods: newCounters("octo_agent_method_calls_total", "Calls to agents, by agentrpc method and result (ok, the agent's error code, timeout, conn_lost or canceled).", "method", "result"),
		agentConns:   newCounters("octo_agent_connects_total", "Connections made to agents, by placement.", "placement"),
		agentStarts:  newCounters("octo_agent_starts_total", "Agent starts seen: an agent answering with a process ID not seen before for its user."),
		sessions:     newCounters("octo_sessions_started_total", "Sessions started."),
		limitHits:    newCounters("octo_limit_hits_total", "Requests refused with 429 Too Many Requests, by route and error code: each names a limit.", "route", "code"),
		agentLastPID: map[string]int{},
	}
}

// Request counts one answered HTTP request of route (the pattern, never
// the raw path: label values must stay few).
func (m *Metrics) Request(route string, code int, d time.Duration, received, sent int64) {
	if m == nil {
		return
	}
	m.requests.add(1, route, codeText(code))
	m.duration.observe(d.Seconds(), route)
	if received > 0 {
		m.received.add(uint64(received), route)
	}
	if sent > 0 {
		m.sent.add(uint64(sent), route)
	}
}

// codes are the status codes' label values, made once.
var codes = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func codeText(code int) string {
	if code >= 0 && code < len(codes) {
		return codes[code]
	}
	return strconv.Itoa(code)
}

// AgentCall counts a call to an agent made for route; result is "ok" or
// the error code.
func (m *Metrics) AgentCall(route, result string) {
	if m != nil {
		m.agentCalls.add(1, route, result)
	}
}

// AgentMethodCall counts a call of an agentrpc method that ended with err
// (the signature of agentrpc.Client.Observe).
func (m *Metrics) AgentMethodCall(method string, err error) {
	if m != nil {
		m.agentMethods.add(1, method, callResult(err))
	}
}

// callResult names how an agent call ended: "ok", the agent's error code,
// or what the connection or the clock did.
func callResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, agentrpc.ErrConnLost):
		return "conn_lost"
	case errors.Is(err, agentrpc.ErrBadReply):
		return "bad_reply"
	}
	return string(agentrpc.CodeOf(err))
}

// AgentConnect counts a new connection to an agent at placement.
func (m *Metrics) AgentConnect(placement string) {
	if m != nil {
		m.agentConns.add(1, placement)
	}
}

// AgentSeen notes that user's agent answered as process pid, counting a
// start when the PID differs from the last one seen for user.
func (m *Metrics) AgentSeen(user string, pid int) {
	if m == nil || pid == 0 {
		return
	}
	m.startsMu.Lock()
	last, ok := m.agentLastPID[user]
	m.agentLastPID[user] = pid
	m.startsMu.Unlock()
	if !ok || last != pid {
		m.agentStarts.add(1)
	}
}

// SessionStarted counts a started session.
func (m *Metrics) SessionStarted() {
	if m != nil {
		m.sessions.add(1)
	}
}

// LimitHit counts a request of route refused (429) with error code.
func (m *Metrics) LimitHit(route, code string) {
	if m != nil {
		m.limitHits.add(1, route, code)
	}
}

// WriteTo writes every metric in the text exposition format (version 0.0.4).
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriter(w)}
	fmt.Fprintf(cw, "# HELP octo_build_info The running octo's version.\n# TYPE octo_build_info gauge\n")
	fmt.Fprintf(cw, "octo_build_info%s 1\n", labelText([]string{"version", "goversion"}, []string{m.version, runtime.Version()}, "", ""))
	m.requests.write(cw)
	m.duration.write(cw)
	m.received.write(cw)
	m.sent.write(cw)
	m.agentCalls.write(cw)
	m.agentMethods.write(cw)
	m.agentConns.write(cw)
	m.agentStarts.write(cw)
	m.sessions.write(cw)
	m.limitHits.write(cw)
	err := cw.w.(*bufio.Writer).Flush()
	return cw.n, err
}

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// ServeHTTP writes the metrics; whoever routes here decides who may read them.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", ContentType)
	if r.Method == http.MethodHead {
		return
	}
	m.WriteTo(w)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
