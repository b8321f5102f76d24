package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// bodyDeadline gives the client cfg.BodyReadTimeout to send r's body and
// returns the function that lifts the deadline once it is read. After a
// failed read the deadline must stay: the server reads what is left of a
// small body before answering, and would wait for it without one.
func (s *Server) bodyDeadline(w http.ResponseWriter) (lift func()) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) != nil {
		return func() {} // not supported by this connection: nothing to lift
	}
	return func() { rc.SetReadDeadline(time.Time{}) }
}

// bodyError reports a failed body read: 413 over limit, 408 too slow, else 400.
func (s *Server) bodyError(w http.ResponseWriter, err error, what string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over the limit of %d bytes (server.max_body_bytes); %s", mbe.Limit, what))
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, "timeout", fmt.Sprintf("body not received within %s (server.body_read_timeout); %s", s.cfg.BodyReadTimeout, what))
	default:
		writeError(w, http.StatusBadRequest, "invalid", "read body: "+err.Error()+"; "+what)
	}
}

// limitBody applies server.max_body_bytes, if set, to body.
func (s *Server) limitBody(w http.ResponseWriter, body io.ReadCloser) io.ReadCloser {
	if s.cfg.MaxBodyBytes <= 0 {
		return body
	}
	return http.MaxBytesReader(w, body, s.cfg.MaxBodyBytes)
}

// uploadBody returns r's body for a streamed upload: capped by
// server.max_body_bytes if set, and with a read deadline that moves with
// progress, so that a body of any size may take as long as it keeps
// arriving, and one that stalls for server.body_read_timeout fails. lift
// removes the deadline once the body is read.
func (s *Server) uploadBody(w http.ResponseWriter, r *http.Request) (body io.Reader, lift func()) {
	rc := http.NewResponseController(w)
	pb := &progressBody{r: s.limitBody(w, r.Body), rc: rc, timeout: s.cfg.BodyReadTimeout}
	if pb.extend() != nil {
		return pb.r, func() {} // not supported by this connection: nothing to lift
	}
	return pb, func() { rc.SetReadDeadline(time.Time{}) }
}

// progressBody pushes its connection's read deadline forward as bytes
// arrive (at most once a second: setting it costs a timer update).
type progressBody struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	last    time.Time
}

func (pb *progressBody) extend() error {
	pb.last = time.Now()
	return pb.rc.SetReadDeadline(pb.last.Add(pb.timeout))
}

func (pb *progressBody) Read(p []byte) (int, error) {
	n, err := pb.r.Read(p)
	if n > 0 && time.Since(pb.last) > time.Second {
		pb.extend()
	}
	return n, err
}
