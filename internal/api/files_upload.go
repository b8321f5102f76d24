package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sync"
	"syscall"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// putFile replaces a file atomically with the body, streamed: the agent
// creates a temporary file next to the target and passes its descriptor,
// into which the body is copied (or, without descriptor passing, sent in
// File.WriteAt chunks); File.Commit then syncs and renames it. ?parents=1
// creates missing directories, ?mode=0600 sets a new file's mode. It
// answers 201 when it created the file, 200 when it replaced one, both
// with the file's JSON description and ETag.
func (s *Server) putFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	parents, ok := boolParam(w, r, "parents")
	if !ok {
		return
	}
	mode, ok := modeParam(w, r)
	if !ok {
		return
	}
	if limit := s.cfg.MaxBodyBytes; limit > 0 && r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes is over the limit of %d (server.max_body_bytes)", r.ContentLength, limit))
		return
	}
	if !s.uploads.acquire(t.User.Name) {
		s.log.Warn("upload refused", "user", t.User.Name, "reason", "too many uploads in progress", "limit", s.cfg.MaxUploadsPerUser, "path", r.URL.Path)
		writeError(w, http.StatusTooManyRequests, "limit", fmt.Sprintf("%d uploads of yours are in progress (server.max_uploads_per_user); retry when one has finished", s.cfg.MaxUploadsPerUser))
		return
	}
	defer s.uploads.release(t.User.Name)
	ifMatch, ok := s.putPreconditions(w, r, t.User, p)
	if !ok {
		return
	}
	req := agentrpc.CreateRequest{Path: p, Mode: mode, CreateParents: parents, FD: true,
		CreateOnly: r.Header.Get("If-None-Match") == "*"}
	body, lift := s.uploadBody(w, r)
	cr, err := s.upload(r, t.User, req, body, ifMatch)
	if err != nil {
		s.uploadError(w, r, t, p, parents, err)
		return
	}
	lift()
	w.Header().Set("ETag", cr.Info.ETag())
	status := http.StatusOK
	if cr.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, fileOf(cr.Info))
}

// putPreconditions checks a PUT's If-Match, If-None-Match and
// If-Unmodified-Since against the file as it is, writing 412 when they
// fail. It returns the ETag Commit must find again (the agent checks it
// just before the rename), or "" when the request has no precondition.
func (s *Server) putPreconditions(w http.ResponseWriter, r *http.Request, u backend.User, p string) (string, bool) {
	if inm := r.Header.Get("If-None-Match"); (inm == "" || inm == "*") && !hasAny(r, "If-Match", "If-Unmodified-Since") {
		return "", true // none, or only create-only, which Commit decides atomically
	}
	fi, ok := s.statForCondition(w, r, u, p)
	if !ok {
		return "", false
	}
	if precondition(r, fi) != 0 {
		writePrecondition(w, r)
		return "", false
	}
	if fi == nil {
		return "", true
	}
	return fi.ETag(), true
}

// statForCondition describes p for a precondition as a GET would serve
// it (through a final symlink, as its ETag was given): nil when it does not
// exist. File.Open without inline bytes or a descriptor only describes.
func (s *Server) statForCondition(w http.ResponseWriter, r *http.Request, u backend.User, p string) (*agentrpc.FileInfo, bool) {
	var fi agentrpc.FileInfo
	_, err := s.call(r, u, backend.Repeatable, 0, func(ctx context.Context, c *agentrpc.Client) error {
		o, err := c.Open(ctx, agentrpc.OpenRequest{Path: p})
		fi = o.Info
		return err
	})
	switch {
	case errors.Is(err, agentrpc.ErrNotFound):
		return nil, true
	case err != nil:
		s.agentError(w, r, err)
		return nil, false
	}
	return &fi, true
}

func hasAny(r *http.Request, hs ...string) bool {
	for _, h := range hs {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// errUploadLost reports an agent connection lost in the middle of an
// upload, which cannot be sent again: the body is consumed.
var errUploadLost = errors.New("the agent connection was lost during the upload; nothing was written")

// bodyReadError and sinkError tell which side of the copy failed.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// upload streams body into a new upload of req and commits it. The
// connection is held for the whole upload (the agent aborts an upload its
// connection leaves), each agent call bounded by the agent timeout, the
// body by its progress deadline.
func (s *Server) upload(r *http.Request, u backend.User, req agentrpc.CreateRequest, body io.Reader, ifMatch string) (agentrpc.CommitReply, error) {
	var cr agentrpc.CommitReply
	attempted := false
	_, err := s.cfg.Pool.Do(r.Context(), u, backend.Once, func(c *agentrpc.Client) error {
		if attempted {
			return errUploadLost
		}
		attempted = true
		ctx, cancel := agentrpc.WithTimeout(r.Context(), s.cfg.AgentTimeout)
		up, err := c.Create(ctx, req)
		cancel()
		if err != nil {
			attempted = !errors.Is(err, agentrpc.ErrConnLost) // never created: a retry may create
			return err
		}
		n, err := s.copyUpload(r, c, up, body)
		if err != nil {
			// The client may be gone: the abort gets a context of its own.
			actx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.AgentTimeout)
			c.Abort(actx, up.ID)
			cancel()
			return err
		}
		// The commit syncs the whole file: it gets time in proportion.
		ctx, cancel = agentrpc.WithTimeout(r.Context(), s.cfg.AgentTimeout+syncTime(n))
		defer cancel()
		cr, err = c.Commit(ctx, agentrpc.CommitRequest{ID: up.ID, Size: n, IfMatch: ifMatch})
		return err
	})
	return cr, err
}

// syncTime is how long syncing n bytes may take, at 10 MB/s.
func syncTime(n int64) time.Duration { return time.Duration(n/10e6) * time.Second }

// copyUpload copies body into the upload: into its descriptor when the
// agent passed one, else in File.WriteAt chunks. One buffer per upload
// bounds the memory it holds.
func (s *Server) copyUpload(r *http.Request, c *agentrpc.Client, up agentrpc.Upload, body io.Reader) (int64, error) {
	buf := uploadBufs.Get().(*[]byte)
	defer uploadBufs.Put(buf)
	var sink io.Writer
	if up.File != nil {
		defer up.File.Close()
		sink = up.File
	} else {
		sink = &chunkWriter{r: r, c: c, id: up.ID, timeout: s.cfg.AgentTimeout}
	}
	var n int64
	for {
		m, rerr := fill(body, *buf)
		if m > 0 {
			if _, err := sink.Write((*buf)[:m]); err != nil {
				return n, &sinkError{err}
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			break // the whole body: a client gone early is io.ErrUnexpectedEOF
		}
		if rerr != nil {
			return n, &bodyReadError{rerr}
		}
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		return n, &bodyReadError{fmt.Errorf("body of %d bytes, announced %d", n, r.ContentLength)}
	}
	if up.File != nil {
		// Errors of delayed writes (a quota on NFS) show at close.
		if err := up.File.Close(); err != nil {
			return n, &sinkError{err}
		}
	}
	return n, nil
}

// fill reads into buf until it is full or the body ends (io.EOF) or fails.
func fill(body io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// uploadBufs holds the copy buffers of uploads: a chunk each.
var uploadBufs = sync.Pool{New: func() any { b := make([]byte, agentrpc.MaxWriteChunk); return &b }}

// chunkWriter writes an upload through File.WriteAt calls.
type chunkWriter struct {
	r       *http.Request
	c       *agentrpc.Client
	id      string
	off     int64
	timeout time.Duration
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	ctx, cancel := agentrpc.WithTimeout(cw.r.Context(), cw.timeout)
	defer cancel()
	if err := cw.c.WriteAt(ctx, agentrpc.ChunkRequest{ID: cw.id, Offset: cw.off, Data: p}); err != nil {
		return 0, err
	}
	cw.off += int64(len(p))
	return len(p), nil
}

// uploadError answers a failed upload: the old file, if any, is intact.
func (s *Server) uploadError(w http.ResponseWriter, r *http.Request, t target, p string, parents bool, err error) {
	var be *bodyReadError
	var se *sinkError
	var errno syscall.Errno
	switch {
	case errors.As(err, &be):
		s.bodyError(w, be.err, "nothing was written")
	case errors.As(err, &se) && errors.As(se.err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EDQUOT):
		writeError(w, http.StatusInsufficientStorage, "insufficient_storage", fmt.Sprintf("write %s: %v; the old file, if any, is unchanged: free space and retry", p, errno))
	case errors.As(err, &se) && errors.As(se.err, &errno) && errno == syscall.EFBIG:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("write %s: %v; the old file, if any, is unchanged", p, errno))
	case errors.As(err, &se) && !isAgentErr(se.err):
		s.log.Warn("upload failed", "user", t.User.Name, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("write %s: %v; the old file, if any, is unchanged", p, se.err))
	case errors.Is(err, errUploadLost):
		writeError(w, http.StatusBadGateway, backend.CodeFailed, err.Error())
	case errors.Is(err, agentrpc.ErrExists) && r.Header.Get("If-None-Match") == "*":
		writePrecondition(w, r)
	case !parents && path.Dir(p) != "." && errors.Is(err, agentrpc.ErrNotFound):
		// Writing creates the file: only a missing directory is not found.
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("parent directory %s does not exist; add ?parents=1 to create it", path.Dir(p)))
	default:
		s.agentError(w, r, err)
	}
}

func isAgentErr(err error) bool {
	var ae *agentrpc.Error
	return errors.As(err, &ae) || errors.Is(err, agentrpc.ErrConnLost) || errors.Is(err, context.DeadlineExceeded)
}

// deleteFile removes a file (a tree with ?recursive=1). If-Match,
// If-None-Match and If-Unmodified-Since are checked against the file as it
// is; 412 changes nothing.
func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	if path.Clean(p) == "." {
		writeError(w, http.StatusBadRequest, "invalid", "refusing to delete the workspace itself")
		return
	}
	recursive, ok := boolParam(w, r, "recursive")
	if !ok {
		return
	}
	var ifMatch string
	if conditional(r) {
		fi, ok := s.statForCondition(w, r, t.User, p)
		if !ok {
			return
		}
		if precondition(r, fi) != 0 {
			writePrecondition(w, r)
			return
		}
		if fi != nil {
			ifMatch = fi.ETag()
		}
	}
	if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
		return c.Remove(ctx, agentrpc.RemoveRequest{Path: p, Recursive: recursive, IfMatch: ifMatch})
	}); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}
