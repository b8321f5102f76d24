package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/sys/unix"
)

// StartRequest is the body of POST /api/v1/sessions.
type StartRequest struct {
	Command []string          `json:"command"`
	Cwd     string            `json:"cwd,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	TTY     bool              `json:"tty,omitempty"`
	Name    string            `json:"name,omitempty"`
	Rows    uint16            `json:"rows,omitempty"`
	Cols    uint16            `json:"cols,omitempty"`
}

// Session is a session's record.
type Session struct {
	ID         string    `json:"id"`
	Name       string    `json:"name,omitempty"`
	Command    []string  `json:"command"`
	Cwd        string    `json:"cwd"`
	TTY        bool      `json:"tty"`
	PID        int       `json:"pid,omitempty"`
	State      string    `json:"state"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Signal     string    `json:"signal,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartTime  time.Time `json:"start_time"`
	EndTime    time.Time `json:"end_time,omitzero"`
	OutputSize int64     `json:"output_size"`
}

// Running reports whether the session's process still runs.
func (s Session) Running() bool { return s.State == "running" }

// ExitStatus is the session's exit status as a shell reports it: the exit
// code, 128 plus the signal's number when a signal ended it, and 255 when
// it failed to start or was lost.
func (s Session) ExitStatus() int {
	switch {
	case s.ExitCode != nil:
		return *s.ExitCode
	case s.Signal != "":
		if n := unix.SignalNum("SIG" + s.Signal); n != 0 {
			return 128 + int(n)
		}
	}
	return 255
}

func sessionPath(id string, rest string) string {
	return "/api/v1/sessions/" + url.PathEscape(id) + rest
}

// Start starts a session.
func (c *Client) Start(ctx context.Context, req StartRequest) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodPost, "/api/v1/sessions", nil, req, &s)
	return s, err
}

// Sessions lists the sessions, oldest first.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var list struct {
		Sessions []Session `json:"sessions"`
	}
	err := c.call(ctx, http.MethodGet, "/api/v1/sessions", nil, nil, &list)
	return list.Sessions, err
}

// Session returns one session's record.
func (c *Client) Session(ctx context.Context, id string) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodGet, sessionPath(id, ""), nil, nil, &s)
	return s, err
}

// Stop stops a session: TERM to its process group, KILL after grace (the
// server's default when zero). It returns the ended session.
func (c *Client) Stop(ctx context.Context, id string, grace time.Duration) (Session, error) {
	var q url.Values
	if grace > 0 {
		q = url.Values{"grace": {grace.String()}}
	}
	var s Session
	err := c.call(ctx, http.MethodDelete, sessionPath(id, ""), q, nil, &s)
	return s, err
}

// Remove removes a finished session's record and output.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, sessionPath(id, ""), url.Values{"remove": {"1"}}, nil, nil)
}

// Signal sends a signal (a name such as "INT" or a number) to a session's process group.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	return c.call(ctx, http.MethodPost, sessionPath(id, "/signal"), nil, map[string]string{"signal": signal}, nil)
}

// Resize sets a tty session's terminal size.
func (c *Client) Resize(ctx context.Context, id string, rows, cols uint16) error {
	return c.call(ctx, http.MethodPost, sessionPath(id, "/resize"), nil, map[string]uint16{"rows": rows, "cols": cols}, nil)
}

// Input writes r to a session's standard input; eof then closes it.
func (c *Client) Input(ctx context.Context, id string, r io.Reader, eof bool) error {
	var q url.Values
	if eof {
		q = url.Values{"eof": {"1"}}
	}
	req, err := c.newRequest(ctx, http.MethodPost, sessionPath(id, "/input"), q, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Wait polls until the session has ended and returns its record.
func (c *Client) Wait(ctx context.Context, id string) (Session, error) {
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		s, err := c.Session(ctx, id)
		if err != nil || !s.Running() {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(delay):
		}
	}
}
