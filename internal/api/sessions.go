package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, t target) {
	var req startJSON
	if !decodeJSON(w, r, &req) {
		return
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		writeError(w, http.StatusBadRequest, "invalid", `field command: want a non-empty array such as ["ls", "-l"]`)
		return
	}
	start := func() (sess agentrpc.Session, ok bool) {
		_, ok = s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) (err error) {
			sess, err = c.Start(ctx, agentrpc.StartRequest{Argv: req.Command, Cwd: req.Cwd, Env: req.Env,
				Name: req.Name, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols})
			return err
		})
		return sess, ok
	}
	if s.startAttached(w, r, t.User, start) { // Upgrade: tcp, see attach.go
		return
	}
	sess, ok := start()
	if !ok {
		return
	}
	w.Header().Set("Location", "/api/v1/sessions/"+sess.ID)
	writeJSON(w, http.StatusCreated, sessionOf(sess))
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, t target) {
	var list []agentrpc.Session
	if _, ok := s.agentCall(w, r, t.User, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		list, err = c.Sessions(ctx)
		return err
	}); !ok {
		return
	}
	out := sessionListJSON{Sessions: make([]sessionJSON, len(list))}
	for i, ss := range list {
		out.Sessions[i] = sessionOf(ss)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, t target) {
	var sess agentrpc.Session
	if _, ok := s.agentCall(w, r, t.User, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		sess, err = c.Session(ctx, r.PathValue("id"))
		return err
	}); !ok {
		return
	}
	writeJSON(w, http.StatusOK, sessionOf(sess))
}

// stopSession stops a session; with ?remove=1 it then removes its record
// and output, answering with the last record.
func (s *Server) stopSession(w http.ResponseWriter, r *http.Request, t target) {
	remove, ok := boolParam(w, r, "remove")
	if !ok {
		return
	}
	var grace time.Duration
	if g := queryValue(r, "grace"); g != "" {
		d, err := time.ParseDuration(g)
		// The agent's limit, so that the API never accepts what it refuses.
		if err != nil || d < 0 || d > agentrpc.MaxWait {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter grace: %q is not a duration between 0s and %v, the agent's limit (e.g. 5s)", g, agentrpc.MaxWait))
			return
		}
		grace = d
	}
	var sess agentrpc.Session
	// Stop waits for the process to end: allow the grace period on top of the usual timeout.
	if _, err := s.call(r, t.User, backend.Once, grace, func(ctx context.Context, c *agentrpc.Client) (err error) {
		sess, err = c.Stop(ctx, agentrpc.StopRequest{ID: r.PathValue("id"), Grace: grace})
		return err
	}); err != nil {
		s.agentError(w, r, err)
		return
	}
	if remove {
		if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
			return c.Call(ctx, agentrpc.MethodSessionRemove, &agentrpc.SessionRef{ID: sess.ID}, &agentrpc.Empty{})
		}); !ok {
			return
		}
	}
	writeJSON(w, http.StatusOK, sessionOf(sess))
}

func (s *Server) signalSession(w http.ResponseWriter, r *http.Request, t target) {
	var req signalJSON
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Signal == "" {
		writeError(w, http.StatusBadRequest, "invalid", `field signal: want a signal name or number such as "INT"`)
		return
	}
	if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
		return c.Signal(ctx, r.PathValue("id"), req.Signal)
	}); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) resizeSession(w http.ResponseWriter, r *http.Request, t target) {
	var req resizeJSON
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Rows == 0 || req.Cols == 0 {
		writeError(w, http.StatusBadRequest, "invalid", "fields rows and cols: want positive numbers")
		return
	}
	if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
		return c.Resize(ctx, r.PathValue("id"), req.Rows, req.Cols)
	}); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

// inputSession writes the raw body to the session's stdin, in chunks the
// agent accepts, then closes stdin with ?eof=1.
func (s *Server) inputSession(w http.ResponseWriter, r *http.Request, t target) {
	eof, ok := boolParam(w, r, "eof")
	if !ok {
		return
	}
	id := r.PathValue("id")
	lift := s.bodyDeadline(w)
	body := s.limitBody(w, r.Body)
	buf := make([]byte, 64<<10)
	sent := false
	for {
		n, rerr := fillChunk(body, buf)
		if rerr != nil && rerr != io.EOF {
			// Too much, too slow, or a client gone before its body's
			// end: this chunk is not sent.
			s.bodyError(w, rerr, "the chunks before it were written")
			return
		}
		if n > 0 {
			data := buf[:n]
			if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
				return c.WriteInput(ctx, id, data)
			}); !ok {
				return
			}
			sent = true
		}
		if rerr != nil { // the end of the body
			lift()
			break
		}
	}
	switch {
	case eof:
		if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
			return c.CloseInput(ctx, id)
		}); !ok {
			return
		}
	case !sent: // nothing to write: still say whether the session exists
		if _, ok := s.agentCall(w, r, t.User, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) error {
			_, err := c.Session(ctx, id)
			return err
		}); !ok {
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// fillChunk reads into buf until it is full or the body ends. It returns
// io.EOF, with the last bytes, only when the body ended as announced; any
// other error (the body's io.ErrUnexpectedEOF from a client that left
// before its Content-Length, a deadline, the size limit) comes back as it
// is. (io.ReadFull would turn a clean end of a short last chunk and a cut
// body into the same io.ErrUnexpectedEOF.)
func fillChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
