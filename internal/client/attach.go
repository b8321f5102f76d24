package client

import (
	"bufio"
	"context"
	"fmt"
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

// Attach attaches to a session: POST /api/v1/sessions/{id}/attach with
// Upgrade: tcp, answered by 101 Switching Protocols.
func (c *Client) Attach(ctx context.Context, id string, opt AttachOptions) (*Attachment, error) {
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
	req, err := c.newRequest(ctx, http.MethodPost, sessionPath(id, "/attach"), q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, c.reachError(err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach: send request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("attach: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, errorOf(resp.StatusCode, resp.Body)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	off, err := headerInt(resp.Header, HeaderOffset)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Attachment{Conn: conn, Offset: off, br: br}, nil
}
