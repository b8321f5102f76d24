// Package client speaks octo's public HTTP API, over the Unix socket or
// HTTP(S), for the octo command line and for tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// DefaultSocket is the system control plane's Unix socket API.
const DefaultSocket = "/run/octo/octo.sock"

// Client calls one control plane as the caller the socket's peer
// credentials or the token name, acting for User when set (admins only).
type Client struct {
	base  *url.URL // scheme and host; "http://octo" for a Unix socket
	where string   // the socket path or URL, for errors
	token string
	user  string
	hc    *http.Client
	// dial opens a raw connection to the server, for attach.
	dial func(ctx context.Context) (net.Conn, error)
}

// NewUnix returns a client of the API on a Unix socket: the kernel tells the
// server who calls, so no token is needed.
func NewUnix(socket string) *Client {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	tr := &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableCompression: true,
	}
	return &Client{base: &url.URL{Scheme: "http", Host: "octo"}, where: socket, hc: &http.Client{Transport: tr}, dial: dial}
}

// NewURL returns a client of the API at an http:// or https:// URL that
// sends token (if not empty) as a bearer token.
func NewURL(rawURL, token string) (*Client, error) { return NewURLTLS(rawURL, token, nil) }

// NewURLTLS is NewURL with the TLS configuration of https:// connections
// (nil: the system's roots).
func NewURLTLS(rawURL, token string, tlsConf *tls.Config) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://HOST:PORT or https://HOST:PORT", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	} else {
		tlsConf = tlsConf.Clone()
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	tr.TLSClientConfig = tlsConf
	dial := func(ctx context.Context) (net.Conn, error) {
		if u.Scheme == "https" {
			d := tls.Dialer{Config: tlsConf}
			return d.DialContext(ctx, "tcp", host)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", host)
	}
	return &Client{base: &url.URL{Scheme: u.Scheme, Host: u.Host}, where: u.Scheme + "://" + u.Host, token: token, hc: &http.Client{Transport: tr}, dial: dial}, nil
}

// FromEnv returns a client of $OCTO_URL with $OCTO_TOKEN when $OCTO_URL is
// set (trusting the certificates in the PEM file $OCTO_CACERT, if set, for
// https), else of the Unix socket $OCTO_SOCKET (default DefaultSocket).
func FromEnv() (*Client, error) {
	if u := os.Getenv("OCTO_URL"); u != "" {
		var conf *tls.Config
		if f := os.Getenv("OCTO_CACERT"); f != "" {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("$OCTO_CACERT: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("$OCTO_CACERT %s: no PEM certificate in it", f)
			}
			conf = &tls.Config{RootCAs: pool}
		}
		return NewURLTLS(u, os.Getenv("OCTO_TOKEN"), conf)
	}
	sock := os.Getenv("OCTO_SOCKET")
	if sock == "" {
		sock = DefaultSocket
	}
	return NewUnix(sock), nil
}

// As returns a copy of c that acts for user (?user=, admins only); "" is the caller.
func (c *Client) As(user string) *Client {
	cc := *c
	cc.user = user
	return &cc
}

// Error is an error answer of the API.
type Error struct {
	Status  int    // HTTP status
	Code    string // stable code such as "not_found"
	Message string // what went wrong and what to do
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, e.Code)
	}
	return e.Message
}

// ErrorCode returns err's API error code, or "" if it is not an API error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// url builds the URL of an API path (already escaped) with query q and ?user=.
func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.RawPath = path
	u.Path, _ = url.PathUnescape(path)
	if c.user != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("user", c.user)
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// newRequest builds a request of an API path with the caller's credentials.
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// send sends req and returns the response when its status is 2xx (or 101),
// else the API's error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, errorOf(resp.StatusCode, resp.Body)
	}
	return resp, nil
}

// reachError describes a failure to talk to the server at all.
func (c *Client) reachError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	hint := ""
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		hint = " (is octo running? $OCTO_SOCKET or $OCTO_URL name another server)"
	}
	return fmt.Errorf("octo at %s: %w%s", c.where, err, hint)
}

// errorOf reads an error answer.
func errorOf(status int, body io.Reader) error {
	b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	var e struct {
		Error Error `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
		e.Error.Status = status
		return &e.Error
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &Error{Status: status, Code: "http_" + fmt.Sprint(status), Message: fmt.Sprintf("HTTP %d: %s", status, msg)}
}

// call sends a JSON request (nil in: no body) and decodes a JSON answer into out (nil: discard).
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// Status is GET /api/v1/status.
type Status struct {
	Version string `json:"version"`
	Mode    string `json:"mode"`
	Caller  struct {
		User  string `json:"user"`
		Admin bool   `json:"admin"`
		Via   string `json:"via"`
	} `json:"caller"`
	User      string `json:"user"`
	Placement string `json:"placement"`
	Agent     struct {
		User      string `json:"user"`
		Workspace string `json:"workspace"`
		Version   string `json:"version"`
	} `json:"agent"`
}

// Status returns the server's and the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.call(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st)
	return st, err
}
