// Package dockerapi is a small client for the Docker Engine API over a Unix
// socket, speaking the subset that both dockerd and Podman's compatible
// service implement.
package dockerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// APIVersion is the versioned path prefix of every request. Docker 20.10
// speaks 1.41 at most and Podman's compatible service accepts it.
const APIVersion = "v1.41"

// maxErrorBody bounds how much of an error reply is read into a message.
const maxErrorBody = 64 << 10

// Sentinel errors. Errors from the engine are *Error values matching the
// sentinel of their HTTP status; failures to reach it match ErrUnreachable.
var (
	ErrNotFound    = errors.New("not found")    // 404: no such container or image
	ErrConflict    = errors.New("conflict")     // 409: name in use, removal in progress
	ErrNotModified = errors.New("not modified") // 304: already started or stopped
	ErrUnreachable = errors.New("engine unreachable")
)

// Error is a reply from the engine with a failure status.
type Error struct {
	Status  int
	Message string // the engine's own message
}

func (e *Error) Error() string {
	return fmt.Sprintf("engine: %s (HTTP %d)", e.Message, e.Status)
}

// Is matches the sentinel of e's status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		// Podman reports a name in use as a 500.
		return e.Status == http.StatusConflict ||
			e.Status == http.StatusInternalServerError && strings.Contains(e.Message, "already in use")
	case ErrNotModified:
		return e.Status == http.StatusNotModified
	}
	return false
}

type unreachableError struct {
	socket string
	err    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("engine at %s is unreachable: %v", e.socket, e.err)
}
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }

// Client talks to one engine socket. It is safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client for the engine listening on the Unix socket at path.
// It does not connect until the first call.
func New(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:        8,
		MaxIdleConnsPerHost: 8,
		DisableCompression:  true,
	}
	return &Client{socket: path, hc: &http.Client{Transport: tr}}
}

// Socket returns the engine socket's path.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request and returns the response when its status is 2xx; other
// statuses become *Error. in, when not nil, is sent as JSON (or raw when it is
// an io.Reader). The caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	u := "http://engine/" + APIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	ctype := ""
	switch v := in.(type) {
	case nil:
	case io.Reader:
		body, ctype = v, "application/x-tar"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &unreachableError{c.socket, op.Err}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		msg = m.Message
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Message: msg}
}

// call sends a request and decodes a JSON reply into out (when not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.do(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode reply to %s %s: %w", method, path, err)
	}
	return nil
}

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/_ping", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1024))
	return err
}

// Version describes the engine.
type Version struct {
	Version       string
	APIVersion    string `json:"ApiVersion"`
	MinAPIVersion string `json:"MinAPIVersion"`
	Os            string
	Arch          string
	Components    []struct {
		Name    string
		Version string
	}
}

// IsPodman reports whether the engine is Podman's compatible service.
func (v Version) IsPodman() bool {
	for _, c := range v.Components {
		if strings.HasPrefix(c.Name, "Podman") {
			return true
		}
	}
	return false
}

// Version returns the engine's version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.call(ctx, http.MethodGet, "/version", nil, nil, &v)
	return v, err
}
