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

// readUpload reads an upload body of at most limit bytes into memory,
// holding its size in the server's upload budget until release is called.
// It has written the error response when ok is false.
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request, limit int64) (data []byte, release func(), ok bool) {
	const nothing = "nothing was written"
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes is over the limit of %d (server.max_body_bytes)", r.ContentLength, limit))
		return nil, nil, false
	}
	var taken int64
	release = func() { s.uploads.give(taken) }
	take := func(n int64) bool {
		if !s.uploads.tryTake(n) {
			writeError(w, http.StatusTooManyRequests, "limit", fmt.Sprintf("uploads in progress hold the server's budget of %d bytes (server.max_upload_bytes_in_flight); retry shortly", s.cfg.MaxUploadsInFlight))
			return false
		}
		taken += n
		return true
	}
	lift := s.bodyDeadline(w)
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 { // the server stops the body at Content-Length
		if !take(r.ContentLength) {
			return nil, nil, false
		}
		data = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, data); err != nil {
			release()
			s.bodyError(w, err, nothing)
			return nil, nil, false
		}
		lift()
		return data, release, true
	}
	// Chunked: reserve each growth of the buffer before making it.
	for {
		if len(data) == cap(data) {
			grow := min(max(int64(cap(data)), 64<<10), limit+1-int64(cap(data)))
			if !take(grow) {
				release()
				return nil, nil, false
			}
			data = append(make([]byte, 0, int64(cap(data))+grow), data...)
		}
		n, err := body.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			lift()
			return data, release, true
		}
		if err != nil {
			release()
			s.bodyError(w, err, nothing)
			return nil, nil, false
		}
	}
}
