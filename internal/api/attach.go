package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// attach turns the connection into a bidirectional byte stream with a
// session: POST /api/v1/sessions/{id}/attach with Connection: Upgrade and
// Upgrade: tcp is answered 101 Switching Protocols (as Docker's attach);
// then the client's bytes go to the session's stdin and the session's
// output (stdout and stderr merged, as the agent keeps them) comes back
// from ?offset=N (default: the current end), until the session ends and
// the server closes the connection. The output is raw bytes: where it
// starts is the 101's Octo-Output-Offset header, and a client that falls
// behind what the agent keeps sees the connection close at the gap (it
// knows the offset it reached, and attaches again from there).
//
// ?stdin=0 discards the client's bytes. The client ending its input (a
// half-close, or closing the connection: the server cannot tell them
// apart) detaches, leaving the session running, unless ?close_stdin=1
// asked to close the session's stdin then (at once with stdin=0); output
// keeps coming until the session ends.
func (s *Server) attach(w http.ResponseWriter, r *http.Request, t target) {
	u := t.User
	if !upgradeTCP(r.Header) {
		w.Header().Set("Upgrade", "tcp")
		writeError(w, http.StatusUpgradeRequired, "upgrade_required", "attach needs the headers Connection: Upgrade and Upgrade: tcp (octo attach sends them)")
		return
	}
	opt, ok := attachParams(w, r)
	if !ok {
		return
	}
	if !s.streams.acquire(u.Name) {
		s.streamLimit(w, u)
		return
	}
	defer s.streams.release(u.Name)
	first, ok := s.attachStart(w, r, u)
	if !ok {
		return
	}
	s.serveAttach(w, r, u, first, opt)
}

// attachOptions are an attachment's query parameters.
type attachOptions struct {
	stdin      bool // ?stdin=0 discards the client's bytes
	closeStdin bool // ?close_stdin=1
}

func attachParams(w http.ResponseWriter, r *http.Request) (attachOptions, bool) {
	stdin, ok := boolParam(w, r, "stdin")
	if !ok {
		return attachOptions{}, false
	}
	closeStdin, ok := boolParam(w, r, "close_stdin")
	return attachOptions{stdin: stdin || queryValue(r, "stdin") == "", closeStdin: closeStdin}, ok
}

func (s *Server) streamLimit(w http.ResponseWriter, u backend.User) {
	writeError(w, http.StatusTooManyRequests, "limit", fmt.Sprintf("%s already has %d output streams open (server.max_streams_per_user)", u.Name, s.cfg.MaxStreamsPerUser))
}

// startAttached serves POST /api/v1/sessions with Upgrade: tcp: the
// session is started, then attached from offset 0 in the same request
// (Octo-Session-Id in the 101 names it). It reports false, having done
// nothing, when r asks for no upgrade; a session that did not start is
// answered as without one.
func (s *Server) startAttached(w http.ResponseWriter, r *http.Request, u backend.User, start func() (agentrpc.Session, bool)) bool {
	if !upgradeTCP(r.Header) {
		return false
	}
	opt, ok := attachParams(w, r)
	if !ok {
		return true
	}
	if !s.streams.acquire(u.Name) {
		s.streamLimit(w, u)
		return true
	}
	defer s.streams.release(u.Name)
	sess, ok := start()
	if !ok {
		return true
	}
	if sess.State == agentrpc.StateFailed { // nothing to attach to (one that ended already has output)
		w.Header().Set("Location", "/api/v1/sessions/"+sess.ID)
		writeJSON(w, http.StatusCreated, sessionOf(sess))
		return true
	}
	r.SetPathValue("id", sess.ID)
	s.serveAttach(w, r, u, agentrpc.Output{}, opt)
	return true
}

// serveAttach hijacks the connection and runs the attachment, its output
// from first on. The caller holds a stream of u's.
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request, u backend.User, first agentrpc.Output, opt attachOptions) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "this connection cannot be attached: "+err.Error())
		return
	}
	defer conn.Close()
	if ex, ok := w.(*exchange); ok {
		ex.status = http.StatusSwitchingProtocols // for the request log
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n%s: %s\r\n%s: %d\r\n\r\n",
		hdrSession, r.PathValue("id"), hdrOffset, first.Offset)
	if brw.Flush() != nil {
		return
	}
	// The request's context ends when a read of the hijacked connection
	// sees EOF, which here is the client ending its input, not leaving:
	// the attachment has a context of its own, and reads the connection
	// itself once the bytes the server buffered are consumed.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	r = r.WithContext(ctx)
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	in := io.MultiReader(bytes.NewReader(buffered), conn)
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		if opt.closeStdin && !opt.stdin { // beside the output, not before it
			s.closeInput(r, u)
		}
		if s.attachInput(r, u, in, opt.stdin, opt.closeStdin && opt.stdin) {
			return // stdin closed: keep sending output
		}
		cancel() // detached
		conn.Close()
	}()
	s.follow(r, u, first, followFuncs{
		send: func(o agentrpc.Output) error {
			_, err := conn.Write(o.Data)
			return err
		},
		idle: func() error { return ctx.Err() },
	})
	cancel()
	conn.Close()
	<-inputDone
}

// hdrSession names the session an attachment is with.
const hdrSession = "Octo-Session-Id"

// upgradeTCP reports whether h asks for the tcp upgrade.
func upgradeTCP(h http.Header) bool {
	if !strings.EqualFold(strings.TrimSpace(h.Get("Upgrade")), "tcp") {
		return false
	}
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// attachStart finds where the attachment's output starts: at ?offset=N, or
// the end of the output so far. It checks the session exists.
func (s *Server) attachStart(w http.ResponseWriter, r *http.Request, u backend.User) (agentrpc.Output, bool) {
	if v := queryValue(r, "offset"); v != "" {
		off, err := strconv.ParseInt(v, 10, 64)
		if err != nil || off < 0 {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter offset: %q is not a byte offset", v))
			return agentrpc.Output{}, false
		}
		out, err := s.readOutput(r, u, off, 0)
		if err != nil {
			s.agentError(w, r, err)
			return out, false
		}
		return out, true
	}
	var sess agentrpc.Session
	if _, ok := s.agentCall(w, r, u, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		sess, err = c.Session(ctx, r.PathValue("id"))
		return err
	}); !ok {
		return agentrpc.Output{}, false
	}
	return agentrpc.Output{Offset: sess.OutputSize, Next: sess.OutputSize}, true
}

// closeInput closes the session's stdin.
func (s *Server) closeInput(r *http.Request, u backend.User) {
	_, err := s.call(r, u, backend.Once, 0, func(ctx context.Context, c *agentrpc.Client) error {
		return c.CloseInput(ctx, r.PathValue("id"))
	})
	if err != nil && r.Context().Err() == nil {
		s.log.Info("attach: stdin not closed", "user", u.Name, "session", r.PathValue("id"), "err", err)
	}
}

// attachInput forwards the client's bytes to the session's stdin (or
// discards them without forward) until the client ends its input. It
// reports whether the session's stdin was closed then (closeStdin); false
// means the client detached.
func (s *Server) attachInput(r *http.Request, u backend.User, in io.Reader, forward, closeStdin bool) bool {
	id := r.PathValue("id")
	buf := make([]byte, inputChunk)
	for {
		n, err := in.Read(buf)
		if n > 0 && forward {
			if werr := s.writeInput(r, u, id, buf[:n]); werr != nil {
				if r.Context().Err() == nil {
					s.log.Info("attach: input not forwarded", "user", u.Name, "session", id, "err", werr)
				}
				forward = false // the session ended or its stdin is closed: drop the rest
			}
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) || !closeStdin || r.Context().Err() != nil {
			return false
		}
		s.closeInput(r, u)
		return true
	}
}

// inputChunk is the most an attachment sends per WriteInput: PIPE_BUF,
// which a pipe takes whole or not at all, so that a write the session did
// not read in time (ErrLimit) wrote nothing and is sent again, without
// losing or repeating a byte.
const inputChunk = 4096

// writeInput writes data to the session's stdin, again while the session
// does not read it: the client's input waits, as it would on a pipe.
func (s *Server) writeInput(r *http.Request, u backend.User, id string, data []byte) error {
	for {
		_, err := s.call(r, u, backend.Once, 0, func(ctx context.Context, c *agentrpc.Client) error {
			return c.WriteInput(ctx, id, data)
		})
		if !errors.Is(err, agentrpc.ErrLimit) || r.Context().Err() != nil {
			return err
		}
	}
}
