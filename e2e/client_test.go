//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"octo/e2e/box"
)

// apiURL is the system control plane inside the box (its own loopback).
const apiURL = "http://127.0.0.1:3000"

// client calls the box's HTTP API over TCP as one user (by bearer token).
type client struct {
	t     testing.TB
	user  string
	token string
	hc    *http.Client
}

func newClient(t testing.TB, b *box.Box, user string) *client {
	return &client{t: t, user: user, token: tokens[user], hc: boxHTTP(b)}
}

// boxHTTP returns an HTTP client whose connections are made in the box's
// network namespace, one fresh connection per request.
func boxHTTP(b *box.Box) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:       b.DialContext,
			DisableKeepAlives: true,
		},
	}
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Body   []byte
}

// apiError is the API's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r response) errorBody() apiError {
	var e apiError
	json.Unmarshal(r.Body, &e)
	return e
}

func (r response) String() string {
	return fmt.Sprintf("HTTP %d %s", r.Status, bytes.TrimSpace(r.Body))
}

// try sends one request and returns its response or a transport error.
func (c *client) try(method, path string, body any) (response, error) {
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(v)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, apiURL+path, rd)
	if err != nil {
		return response{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if _, ok := body.([]byte); !ok && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, data}, err
}

// do sends a request and fails the test on a transport error.
func (c *client) do(method, path string, body any) response {
	c.t.Helper()
	r, err := c.try(method, path, body)
	if err != nil {
		c.t.Fatalf("%s: %s %s: %v", c.user, method, path, err)
	}
	return r
}

// expect sends a request and fails the test unless the status is want;
// it decodes a JSON body into out when out is not nil.
func (c *client) expect(method, path string, body any, want int, out any) response {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.Status != want {
		c.t.Fatalf("%s: %s %s = %s, want HTTP %d", c.user, method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			c.t.Fatalf("%s: %s %s: decode %q: %v", c.user, method, path, r.Body, err)
		}
	}
	return r
}

// session is the API's session record (the fields the suite reads).
type session struct {
	ID       string   `json:"id"`
	Command  []string `json:"command"`
	PID      int      `json:"pid"`
	State    string   `json:"state"`
	ExitCode *int     `json:"exit_code"`
	Signal   string   `json:"signal"`
	Error    string   `json:"error"`
}

// status is GET /api/v1/status (the fields the suite reads).
type status struct {
	User      string `json:"user"`
	Placement string `json:"placement"`
	Agent     struct {
		User string `json:"user"`
		UID  uint32 `json:"uid"`
		GID  uint32 `json:"gid"`
		Home string `json:"home"`
		PID  int    `json:"pid"`
	} `json:"agent"`
}

// start starts a session running argv and returns its record.
func (c *client) start(argv ...string) session {
	c.t.Helper()
	var s session
	c.expect("POST", "/api/v1/sessions", map[string]any{"command": argv}, http.StatusCreated, &s)
	if s.ID == "" {
		c.t.Fatalf("%s: started session has no id", c.user)
	}
	return s
}

// wait polls a session until it is no longer running.
func (c *client) wait(id string) session {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var s session
		c.expect("GET", "/api/v1/sessions/"+id, nil, http.StatusOK, &s)
		if s.State != "running" {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: session %s still running after 20s", c.user, id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// output returns a session's whole output.
func (c *client) output(id string) string {
	c.t.Helper()
	return string(c.expect("GET", "/api/v1/sessions/"+id+"/output?offset=0", nil, http.StatusOK, nil).Body)
}

// run starts argv, waits for it to end successfully and returns its output.
func (c *client) run(argv ...string) string {
	c.t.Helper()
	s := c.wait(c.start(argv...).ID)
	out := c.output(s.ID)
	if s.State != "exited" || s.ExitCode == nil || *s.ExitCode != 0 || s.Signal != "" {
		c.t.Fatalf("%s: session %v ended %s (exit %v, error %q), want exit 0; output:\n%s",
			c.user, argv, s.State, s.ExitCode, s.Error, out)
	}
	return out
}

// unit helpers, run as root inside the box.

func isActive(ctx context.Context, b *box.Box, unit string) string {
	out, _ := b.Run(ctx, "systemctl", "is-active", unit)
	return strings.TrimSpace(out)
}

func unitProp(t *testing.T, b *box.Box, unit, prop string) string {
	t.Helper()
	out, err := b.Run(context.Background(), "systemctl", "show", "-P", prop, unit)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// waitState polls until unit's ActiveState is want.
func waitState(t *testing.T, b *box.Box, unit, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := isActive(context.Background(), b, unit)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q after %v, want %q", unit, got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procIDs returns a box process's real uid and gid from /proc.
func procIDs(t *testing.T, b *box.Box, pid string) (uid, gid string) {
	t.Helper()
	out, err := b.Run(context.Background(), "cat", "/proc/"+pid+"/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

// idOf returns `id -u`/`id -g` of user inside the box.
func idOf(t *testing.T, b *box.Box, flag, user string) string {
	t.Helper()
	out, err := b.Run(context.Background(), "id", flag, user)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
