package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// followWait is how long one long-poll of a follow stream waits for output.
const followWait = 25 * time.Second

// Output headers: where the returned bytes start, where to read next, and
// whether the session has ended with nothing more to come.
// A follow stream that fell behind what the agent keeps ends at the gap
// with hdrResume, where kept output resumes.
const (
	hdrOffset = "Octo-Output-Offset"
	hdrNext   = "Octo-Next-Offset"
	hdrDone   = "Octo-Output-Done"
	hdrResume = "Octo-Output-Resume"
)

func (s *Server) output(w http.ResponseWriter, r *http.Request, t target) {
	u := t.User
	offset, ok := offsetParam(w, r)
	if !ok {
		return
	}
	follow, ok := boolParam(w, r, "follow")
	if !ok {
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if !follow && !sse {
		s.outputOnce(w, r, u, offset)
		return
	}
	if !s.streams.acquire(u.Name) {
		s.streamLimit(w, u)
		return
	}
	defer s.streams.release(u.Name)
	// The first read checks the session exists before a 200 goes out.
	out, err := s.readOutput(r, u, offset, 0)
	if err != nil {
		s.agentError(w, r, err)
		return
	}
	if sse && out.Done && len(out.Data) == 0 && r.Header.Get("Last-Event-ID") != "" {
		// An EventSource reconnecting after the end: 204 stops its retries.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if sse {
		s.streamSSE(w, r, u, out)
	} else {
		s.streamRaw(w, r, u, out)
	}
}

func offsetParam(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v := queryValue(r, "offset")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		v = id // an SSE client resuming
	}
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter offset: %q is not a byte offset", v))
		return 0, false
	}
	return n, true
}

// readOutput reads one chunk of r's session, waiting up to wait for bytes
// past offset.
func (s *Server) readOutput(r *http.Request, u backend.User, offset int64, wait time.Duration) (agentrpc.Output, error) {
	var out agentrpc.Output
	_, err := s.call(r, u, backend.Repeatable, wait, func(ctx context.Context, c *agentrpc.Client) (err error) {
		out, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: r.PathValue("id"), Offset: offset, Wait: wait})
		return err
	})
	if err == nil {
		err = checkOutput(out, offset)
	}
	return out, err
}

// checkOutput refuses a chunk that breaks the protocol (a broken or
// hostile agent): a stream relaying it could loop forever or go backwards.
func checkOutput(out agentrpc.Output, offset int64) error {
	if out.Offset < offset || out.Next != out.Offset+int64(len(out.Data)) || len(out.Data) > agentrpc.MaxReadChunk {
		return &backend.Error{Code: backend.CodeFailed,
			Message: fmt.Sprintf("the agent sent an inconsistent output chunk (%d bytes from offset %d, next %d, for a read at %d)", len(out.Data), out.Offset, out.Next, offset)}
	}
	return nil
}

// Backoff between long polls that came back early with nothing: an agent
// should wait for output, but the stream must not spin when it does not.
const (
	minIdleBackoff = 50 * time.Millisecond
	maxIdleBackoff = 2 * time.Second
)

func (s *Server) outputOnce(w http.ResponseWriter, r *http.Request, u backend.User, offset int64) {
	out, err := s.readOutput(r, u, offset, 0)
	if err != nil {
		s.agentError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(out.Data)))
	h.Set(hdrOffset, strconv.FormatInt(out.Offset, 10))
	h.Set(hdrNext, strconv.FormatInt(out.Next, 10))
	h.Set(hdrDone, strconv.FormatBool(out.Done))
	w.WriteHeader(http.StatusOK)
	w.Write(out.Data)
}

// streamRaw sends output bytes as they arrive (chunked) until the session
// ends, the client goes away, or the output the stream needs next was
// dropped (the reader fell behind what the agent keeps): the body is
// always exactly the output from Octo-Output-Offset to the Octo-Next-Offset
// trailer, and Octo-Output-Resume says where kept output resumes after a gap.
func (s *Server) streamRaw(w http.ResponseWriter, r *http.Request, u backend.User, out agentrpc.Output) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(hdrOffset, strconv.FormatInt(out.Offset, 10))
	h.Set("Trailer", hdrNext+", "+hdrDone+", "+hdrResume)
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	end := s.follow(r, u, out, followFuncs{
		send: func(o agentrpc.Output) error {
			if _, err := w.Write(o.Data); err != nil {
				return err
			}
			return rc.Flush()
		},
		idle: rc.Flush,
	})
	h.Set(hdrNext, strconv.FormatInt(end.next, 10))
	h.Set(hdrDone, strconv.FormatBool(end.done))
	if end.resume > 0 {
		h.Set(hdrResume, strconv.FormatInt(end.resume, 10))
	}
}

// followFuncs are what follow does with what it reads.
type followFuncs struct {
	send func(agentrpc.Output) error // a chunk with bytes
	idle func() error                // a long poll ended without any
	// gap is told that output from..to was dropped before it was read; nil
	// ends the stream there.
	gap func(from, to int64) error
}

// followEnd is where a follow stream stopped.
type followEnd struct {
	next   int64 // the offset after the last byte sent
	done   bool  // the session ended and all its output was sent
	resume int64 // > 0: the stream stopped at a gap; kept output resumes here
}

// follow sends chunk after chunk, starting with first, until the session is
// done, the client leaves, a call fails, EndStreams is called or (without
// f.gap) output was dropped before it was read.
func (s *Server) follow(r *http.Request, u backend.User, first agentrpc.Output, f followFuncs) followEnd {
	ctx, cancel := s.streamContext(r)
	defer cancel()
	rs := r.WithContext(ctx)
	out := first
	var backoff time.Duration
	for {
		if len(out.Data) > 0 {
			if err := f.send(out); err != nil {
				return followEnd{next: out.Offset}
			}
		}
		if out.Done {
			return followEnd{next: out.Next, done: true}
		}
		next := out.Next
		var err error
		start := time.Now()
		out, err = s.readOutput(rs, u, next, followWait)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("output stream ended", "user", u.Name, "session", r.PathValue("id"), "err", err)
			}
			return followEnd{next: next}
		}
		if out.Offset > next {
			if f.gap == nil {
				return followEnd{next: next, resume: out.Offset}
			}
			if err := f.gap(next, out.Offset); err != nil {
				return followEnd{next: next}
			}
		}
		if len(out.Data) > 0 || out.Done {
			backoff = 0
			continue
		}
		if err := f.idle(); err != nil {
			return followEnd{next: next}
		}
		if time.Since(start) < followWait/2 { // nothing, and no waiting for it
			backoff = min(max(2*backoff, minIdleBackoff), maxIdleBackoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return followEnd{next: next}
			case <-t.C:
			}
		}
	}
}
