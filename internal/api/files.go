package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// maxRanges bounds the ranges of one Range header.
const maxRanges = 16

// minRead is the smallest agent read past the first: a range of one byte
// costs no more (reads without descriptor passing).
const minRead = 32 << 10

// getFile serves a file's bytes or a directory's listing. The agent opens
// the file and passes its descriptor, which http.ServeContent sends with
// sendfile; a small file comes inline in the reply; an agent that cannot
// pass descriptors is read in chunks. All three go through serveContent.
func (s *Server) getFile(w http.ResponseWriter, r *http.Request, t target, p string) {
	var o agentrpc.OpenReply
	if _, ok := s.agentCall(w, r, t.User, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		o, err = c.Open(ctx, agentrpc.OpenRequest{Path: p, Inline: agentrpc.MaxInline, FD: true})
		return err
	}); !ok {
		return
	}
	if o.File != nil {
		// Closed when the response ends, whether sent or abandoned by the
		// client: ServeContent returns either way.
		defer o.File.Close()
	}
	if o.Info.Type == agentrpc.TypeDir {
		s.listDir(w, r, t.User, p)
		return
	}
	if o.Inline && unconditional(r) {
		writeWhole(w, r, p, o.Data, &o.Info)
		return
	}
	var content io.ReadSeeker
	switch {
	case o.Inline:
		content = bytes.NewReader(o.Data)
	case o.File != nil:
		content = o.File // *os.File: the response goes out by sendfile
	default:
		content = &agentFile{s: s, r: r, u: t.User, path: p, size: o.Info.Size}
	}
	serveContent(w, r, p, &o.Info, content)
}

// serveContent answers a GET or HEAD of the file fi with content: its
// preconditions and Range decided here, the rest by http.ServeContent.
func serveContent(w http.ResponseWriter, r *http.Request, p string, fi *agentrpc.FileInfo, content io.ReadSeeker) {
	switch precondition(r, fi) {
	case http.StatusNotModified:
		writeNotModified(w, fi)
		return
	case http.StatusPreconditionFailed:
		writePrecondition(w, r)
		return
	}
	if !checkRange(w, r, fi) {
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", fi.ETag())
	if _, ok := content.(*os.File); ok {
		http.ServeContent(w, r, path.Base("/"+p), fi.ModTime, content)
		return
	}
	http.ServeContent(plainWriter{w}, r, path.Base("/"+p), fi.ModTime, content)
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
func writeWhole(w http.ResponseWriter, r *http.Request, p string, data []byte, fi *agentrpc.FileInfo) {
	ctype := mime.TypeByExtension(path.Ext(p))
	if ctype == "" {
		ctype = http.DetectContentType(data[:min(len(data), 512)])
	}
	// Canonical keys assigned directly, their values in one allocation:
	// this is the hot path of small files.
	v := make([]string, 6)
	v[0], v[1], v[2], v[3], v[4] = "nosniff", ctype, "bytes", strconv.Itoa(len(data)), fi.ETag()
	h := w.Header()
	h["X-Content-Type-Options"] = v[0:1:1]
	h["Content-Type"] = v[1:2:2]
	h["Accept-Ranges"] = v[2:3:3]
	h["Content-Length"] = v[3:4:4]
	h["Etag"] = v[4:5:5]
	if !fi.ModTime.IsZero() {
		var b [len(http.TimeFormat)]byte
		v[5] = string(fi.ModTime.UTC().AppendFormat(b[:0], http.TimeFormat))
		h["Last-Modified"] = v[5:6:6]
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

// plainWriter hides the ResponseWriter's io.ReaderFrom: with it, ServeContent
// would send the headers and the body in two writes; without, a small file
// goes out in one.
type plainWriter struct{ http.ResponseWriter }

// listDir writes directory p's listing.
func (s *Server) listDir(w http.ResponseWriter, r *http.Request, u backend.User, p string) {
	var entries []agentrpc.FileInfo
	if _, ok := s.agentCall(w, r, u, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		entries, err = c.List(ctx, p)
		return err
	}); !ok {
		return
	}
	out := dirJSON{Path: p, Type: string(agentrpc.TypeDir), Entries: make([]fileJSON, len(entries))}
	for i, e := range entries {
		out.Entries[i] = fileOf(e)
	}
	writeJSON(w, http.StatusOK, out)
}

// agentFile is an io.ReadSeeker over a file read through the agent in
// chunks of up to agentrpc.MaxReadChunk: downloads from an agent that
// cannot pass descriptors.
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
