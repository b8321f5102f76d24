package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// maxRanges bounds the ranges of one Range header: each costs an agent read.
const maxRanges = 16

// minRead is the smallest agent read past the first: a range of one byte
// costs no more.
const minRead = 32 << 10

// firstRead is how much of a file the first agent call of a GET reads; small
// files need no second call.
const firstRead = 64 << 10

// getFile serves a file's bytes (with Range, Last-Modified and
// If-Modified-Since through http.ServeContent) or a directory's listing.
func (s *Server) getFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	u := t.User
	var first agentrpc.ReadReply
	_, err := s.call(r, u, backend.Repeatable, 0, func(ctx context.Context, c *agentrpc.Client) (err error) {
		first, err = c.Read(ctx, agentrpc.ReadRequest{Path: p, Length: firstRead})
		return err
	})
	if err != nil && (p == "" || errors.Is(err, agentrpc.ErrInvalid)) {
		// Reading a directory fails as invalid; list it instead.
		if s.listDir(w, r, u, p) {
			return
		}
	}
	if err != nil {
		s.agentError(w, r, err)
		return
	}
	if first.EOF && int64(len(first.Data)) == first.Info.Size && unconditional(r) {
		writeWhole(w, r, p, first)
		return
	}
	if n := strings.Count(r.Header.Get("Range"), ",") + 1; n > maxRanges {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, "invalid", fmt.Sprintf("Range asks for %d ranges; at most %d per request", n, maxRanges))
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	f := &agentFile{s: s, r: r, u: u, path: p, size: first.Info.Size, buf: first.Data}
	http.ServeContent(plainWriter{w}, r, path.Base("/"+p), first.Info.ModTime, f)
}

// unconditional reports whether r has no Range or conditional headers, so
// that the whole file is the answer.
func unconditional(r *http.Request) bool {
	for _, h := range []string{"Range", "If-Modified-Since", "If-None-Match", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	return true
}

// writeWhole sends a file read in one chunk, with the headers ServeContent
// would set, without its extra work: the common small-file GET.
func writeWhole(w http.ResponseWriter, r *http.Request, p string, rr agentrpc.ReadReply) {
	ctype := mime.TypeByExtension(path.Ext(p))
	if ctype == "" {
		ctype = http.DetectContentType(rr.Data[:min(len(rr.Data), 512)])
	}
	// Canonical keys assigned directly, their values in one allocation:
	// this is the hot path of small files.
	v := make([]string, 5)
	v[0], v[1], v[2], v[3] = "nosniff", ctype, "bytes", strconv.Itoa(len(rr.Data))
	h := w.Header()
	h["X-Content-Type-Options"] = v[0:1:1]
	h["Content-Type"] = v[1:2:2]
	h["Accept-Ranges"] = v[2:3:3]
	h["Content-Length"] = v[3:4:4]
	if !rr.Info.ModTime.IsZero() {
		var b [len(http.TimeFormat)]byte
		v[4] = string(rr.Info.ModTime.UTC().AppendFormat(b[:0], http.TimeFormat))
		h["Last-Modified"] = v[4:5:5]
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(rr.Data)
	}
}

// plainWriter hides the ResponseWriter's io.ReaderFrom: with it, ServeContent
// would send the headers and the body in two writes; without, a small file
// goes out in one.
type plainWriter struct{ http.ResponseWriter }

// listDir writes p's listing if p is a directory and reports whether it did.
func (s *Server) listDir(w http.ResponseWriter, r *http.Request, u backend.User, p string) bool {
	var entries []agentrpc.FileInfo
	_, err := s.call(r, u, backend.Repeatable, 0, func(ctx context.Context, c *agentrpc.Client) (err error) {
		entries, err = c.List(ctx, p)
		return err
	})
	if err != nil {
		return false
	}
	out := dirJSON{Path: p, Type: string(agentrpc.TypeDir), Entries: make([]fileJSON, len(entries))}
	for i, e := range entries {
		out.Entries[i] = fileOf(e)
	}
	writeJSON(w, http.StatusOK, out)
	return true
}

// agentFile is an io.ReadSeeker over a file read through the agent in
// chunks of up to agentrpc.MaxReadChunk.
type agentFile struct {
	s      *Server
	r      *http.Request
	u      backend.User
	path   string
	size   int64
	off    int64
	buf    []byte // the file's bytes from bufOff
	bufOff int64
}

func (f *agentFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	}
	if offset < 0 {
		return 0, errors.New("seek before start of file")
	}
	f.off = offset
	return offset, nil
}

func (f *agentFile) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.off < f.bufOff || f.off >= f.bufOff+int64(len(f.buf)) {
		if err := f.fill(len(p)); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.buf[f.off-f.bufOff:])
	f.off += int64(n)
	return n, nil
}

// fill reads at f.off what the reader wants, at least minRead bytes: a
// range reads little, and a sequential read doubles each chunk up to
// agentrpc.MaxReadChunk, so that a whole file takes few agent calls.
func (f *agentFile) fill(want int) error {
	n := max(int64(want), minRead)
	if len(f.buf) > 0 && f.off == f.bufOff+int64(len(f.buf)) {
		n = max(n, 2*int64(len(f.buf)))
	}
	n = min(n, agentrpc.MaxReadChunk, f.size-f.off)
	var rr agentrpc.ReadReply
	_, err := f.s.call(f.r, f.u, backend.Repeatable, 0, func(ctx context.Context, c *agentrpc.Client) (err error) {
		rr, err = c.Read(ctx, agentrpc.ReadRequest{Path: f.path, Offset: f.off, Length: int(n)})
		return err
	})
	if err != nil {
		return err
	}
	if len(rr.Data) == 0 {
		return io.ErrUnexpectedEOF // the file shrank while being sent
	}
	f.buf, f.bufOff = rr.Data[:min(int64(len(rr.Data)), n)], f.off
	return nil
}

// putFile replaces a file atomically with the body. ?parents=1 creates
// missing directories, ?mode=0600 sets a new file's mode, and
// If-None-Match: * refuses to replace an existing file (409).
func (s *Server) putFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	parents, ok := boolParam(w, r, "parents")
	if !ok {
		return
	}
	mode, ok := modeParam(w, r)
	if !ok {
		return
	}
	data, release, ok := s.readUpload(w, r, min(s.cfg.MaxBodyBytes, agentrpc.MaxWriteSize))
	if !ok {
		return
	}
	defer release()
	var fi agentrpc.FileInfo
	_, err := s.call(r, t.User, backend.Once, 0, func(ctx context.Context, c *agentrpc.Client) (err error) {
		fi, err = c.Write(ctx, agentrpc.WriteRequest{Path: p, Data: data, Mode: mode,
			CreateParents: parents, CreateOnly: r.Header.Get("If-None-Match") == "*"})
		return err
	})
	if dir := path.Dir(p); err != nil && !parents && dir != "." && errors.Is(err, agentrpc.ErrNotFound) {
		// Writing creates the file: only a missing directory is not found.
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("parent directory %s does not exist; add ?parents=1 to create it", dir))
		return
	}
	if err != nil {
		s.agentError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fileOf(fi))
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	if path.Clean(p) == "." {
		writeError(w, http.StatusBadRequest, "invalid", "refusing to delete the workspace itself")
		return
	}
	recursive, ok := boolParam(w, r, "recursive")
	if !ok {
		return
	}
	if _, ok := s.agentCall(w, r, t.User, backend.Once, func(ctx context.Context, c *agentrpc.Client) error {
		return c.Remove(ctx, agentrpc.RemoveRequest{Path: p, Recursive: recursive})
	}); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

// postFile runs ?op=mkdir (with parents=1, mode=0755) or ?op=rename&to=NEW
// (with no_replace=1).
func (s *Server) postFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	q := r.URL.Query()
	var fi agentrpc.FileInfo
	var call func(ctx context.Context, c *agentrpc.Client) error
	status := http.StatusOK
	switch op := q.Get("op"); op {
	case "mkdir":
		parents, ok := boolParam(w, r, "parents")
		if !ok {
			return
		}
		mode, ok := modeParam(w, r)
		if !ok {
			return
		}
		status = http.StatusCreated
		call = func(ctx context.Context, c *agentrpc.Client) (err error) {
			fi, err = c.Mkdir(ctx, agentrpc.MkdirRequest{Path: p, Mode: mode, Parents: parents})
			return err
		}
	case "rename":
		to := q.Get("to")
		if to == "" {
			writeError(w, http.StatusBadRequest, "invalid", "parameter to: give the new path, e.g. ?op=rename&to=dir/new.txt")
			return
		}
		noReplace, ok := boolParam(w, r, "no_replace")
		if !ok {
			return
		}
		call = func(ctx context.Context, c *agentrpc.Client) (err error) {
			fi, err = c.Rename(ctx, agentrpc.RenameRequest{From: p, To: to, NoReplace: noReplace})
			return err
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter op: %q is not mkdir or rename", op))
		return
	}
	if _, ok := s.agentCall(w, r, t.User, backend.Once, call); ok {
		writeJSON(w, status, fileOf(fi))
	}
}

func modeParam(w http.ResponseWriter, r *http.Request) (os.FileMode, bool) {
	v := queryValue(r, "mode")
	if v == "" {
		return 0, true
	}
	m, err := strconv.ParseUint(v, 8, 32)
	if err != nil || m > 0o777 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter mode: %q is not octal permission bits such as 0644", v))
		return 0, false
	}
	return os.FileMode(m), true
}
