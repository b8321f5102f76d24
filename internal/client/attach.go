package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AttachOptions say what an attachment carries.
type AttachOptions struct {
	// Offset is where the output starts; -1 is the current end of the output.
	Offset int64
	// Stdin forwards what is written to the attachment to the session's
	// standard input.
	Stdin bool
	// CloseStdin closes the session's standard input when the attachment's
	// input ends (CloseWrite), or at once without Stdin.
	CloseStdin bool
}

// Attachment is a bidirectional byte stream with a session: reads are its
// output from Offset on (stdout and stderr merged, as the session wrote
// them), writes go to its standard input. Close detaches, leaving the
// session running.
type Attachment struct {
	net.Conn
	Offset int64 // where the output read starts
	br     *bufio.Reader
	n      int64
}

func (a *Attachment) Read(p []byte) (int, error) {
	n, err := a.br.Read(p)
	a.n += int64(n)
	return n, err
}

// Next is the output offset after the bytes read so far.
func (a *Attachment) Next() int64 { return a.Offset + a.n }

// CloseWrite ends the input: with CloseStdin, the session's stdin closes.
func (a *Attachment) CloseWrite() error {
	if cw, ok := a.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("attach: this connection cannot close only its input")
}

// attachQuery is the query of an attach request.
func (opt AttachOptions) query() url.Values {
	q := url.Values{}
	if opt.Offset >= 0 {
		q.Set("offset", strconv.FormatInt(opt.Offset, 10))
	}
	if !opt.Stdin {
		q.Set("stdin", "0")
	}
	if opt.CloseStdin {
		q.Set("close_stdin", "1")
	}
	return q
}

// Attach attaches to a session: POST /api/v1/sessions/{id}/attach with
// Upgrade: tcp, answered by 101 Switching Protocols.
func (c *Client) Attach(ctx context.Context, id string, opt AttachOptions) (*Attachment, error) {
	req, err := c.newRequest(ctx, http.MethodPost, sessionPath(id, "/attach"), opt.query(), nil)
	if err != nil {
		return nil, err
	}
	a, resp, err := c.upgrade(ctx, req)
	if err == nil && a == nil {
		err = errorOf(resp.StatusCode, resp.Body)
	}
	return a, err
}

// StartAttached starts a session and attaches to it from its first byte in
// one request (POST /api/v1/sessions with Upgrade: tcp; opt.Offset is
// ignored). A session that did not start comes back without an attachment.
func (c *Client) StartAttached(ctx context.Context, sr StartRequest, opt AttachOptions) (string, *Attachment, *Session, error) {
	opt.Offset = -1
	body, err := json.Marshal(sr)
	if err != nil {
		return "", nil, nil, err
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/api/v1/sessions", opt.query(), bytes.NewReader(body))
	if err != nil {
		return "", nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	a, resp, err := c.upgrade(ctx, req)
	switch {
	case err != nil:
		return "", nil, nil, err
	case a != nil:
		return resp.Header.Get(HeaderSession), a, nil, nil
	case resp.StatusCode == http.StatusCreated:
		var s Session
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			return "", nil, nil, fmt.Errorf("decode start answer: %w", err)
		}
		return s.ID, nil, &s, nil
	}
	return "", nil, nil, errorOf(resp.StatusCode, resp.Body)
}

// HeaderSession names the session of an attachment.
const HeaderSession = "Octo-Session-Id"

// upgrade sends req with Upgrade: tcp on a connection of its own and
// returns the attachment when the server switched protocols, else the
// answer, its body read into memory.
func (c *Client) upgrade(ctx context.Context, req *http.Request) (*Attachment, *http.Response, error) {
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, c.reachError(err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("attach: send request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("attach: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("attach: read answer: %w", err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil, resp, nil
	}
	if !stop() {
		conn.Close()
		return nil, nil, ctx.Err()
	}
	off, err := headerInt(resp.Header, HeaderOffset)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return &Attachment{Conn: conn, Offset: off, br: br}, resp, nil
}
