package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"octo/internal/agentrpc"
)

// Conditional requests and ranges (RFC 9110 sections 13 and 14), decided
// here rather than by http.ServeContent, whose answers differ from RFC and
// from nginx in the cases the tests list (and whose 4xx bodies are not our
// JSON errors). ServeContent then sees only requests it answers right.

// precondition evaluates r's preconditions against the file fi (nil: none
// exists) in the RFC's order and returns 0 when the request may go on,
// else 304 (a GET or HEAD whose copy is current) or 412.
func precondition(r *http.Request, fi *agentrpc.FileInfo) int {
	etag := ""
	if fi != nil {
		etag = fi.ETag()
	}
	if im := r.Header.Get("If-Match"); im != "" {
		if fi == nil || !matchETag(im, etag, true) {
			return http.StatusPreconditionFailed
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != "" && fi != nil {
		if t, err := http.ParseTime(ius); err == nil && fi.ModTime.Truncate(time.Second).After(t) {
			return http.StatusPreconditionFailed
		}
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if fi != nil && matchETag(inm, etag, false) {
			if get {
				return http.StatusNotModified
			}
			return http.StatusPreconditionFailed
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" && get && fi != nil {
		if t, err := http.ParseTime(ims); err == nil && !fi.ModTime.Truncate(time.Second).After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// conditional reports whether r has a precondition header.
func conditional(r *http.Request) bool {
	for _, h := range [...]string{"If-Match", "If-None-Match", "If-Unmodified-Since", "If-Modified-Since"} {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// matchETag reports whether the If-Match or If-None-Match list matches
// etag: "*" matches any file; strong comparison refuses weak tags.
func matchETag(list, etag string, strong bool) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		if w, ok := strings.CutPrefix(t, "W/"); ok {
			if strong {
				continue
			}
			t = w
		}
		if t == etag {
			return true
		}
	}
	return false
}

// writeNotModified answers 304 with the validators.
func writeNotModified(w http.ResponseWriter, fi *agentrpc.FileInfo) {
	h := w.Header()
	h.Set("ETag", fi.ETag())
	if !fi.ModTime.IsZero() {
		h.Set("Last-Modified", fi.ModTime.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusNotModified)
}

// writePrecondition answers 412.
func writePrecondition(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusPreconditionFailed, "precondition_failed",
		fmt.Sprintf("the file does not meet the request's conditions (%s); nothing was changed: fetch its current ETag and retry", condHeaders(r)))
}

func condHeaders(r *http.Request) string {
	var hs []string
	for _, h := range [...]string{"If-Match", "If-None-Match", "If-Unmodified-Since"} {
		if v := r.Header.Get(h); v != "" {
			hs = append(hs, h+": "+v)
		}
	}
	return strings.Join(hs, ", ")
}

// checkRange decides r's Range header for a file of size bytes before
// ServeContent sees it: a Range it must ignore (another unit, a failed
// If-Range, an empty file) is removed, a "bytes" unit in any case is
// rewritten as ServeContent expects, and a Range that cannot be served
// is answered with 416 here (ok false).
func checkRange(w http.ResponseWriter, r *http.Request, fi *agentrpc.FileInfo) bool {
	rng := r.Header.Get("Range")
	if rng == "" {
		return true
	}
	unit, set, found := strings.Cut(rng, "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || fi.Size == 0 || !ifRange(r, fi) {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
		return true
	}
	specs := strings.Split(set, ",")
	if len(specs) > maxRanges {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, "invalid", fmt.Sprintf("Range asks for %d ranges; at most %d per request", len(specs), maxRanges))
		return false
	}
	var keep []string // the satisfiable ranges, which alone ServeContent sees
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		ok, valid := rangeSatisfiable(spec, fi.Size)
		if !valid {
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "invalid", fmt.Sprintf("Range %q is malformed; send e.g. bytes=0-99, bytes=100- or bytes=-100", rng))
			return false
		}
		if ok {
			keep = append(keep, spec)
		}
	}
	if len(keep) == 0 {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(fi.Size, 10))
		writeError(w, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", fmt.Sprintf("Range %q lies outside the file's %d bytes", rng, fi.Size))
		return false
	}
	r.Header.Set("Range", "bytes="+strings.Join(keep, ","))
	return true
}

// rangeSatisfiable parses one range-spec: valid is false when it is
// malformed, ok when it selects at least one byte of size.
func rangeSatisfiable(spec string, size int64) (ok, valid bool) {
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return false, false
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return false, false
		}
		return n > 0, true
	}
	f, err := strconv.ParseInt(first, 10, 64)
	if err != nil || f < 0 {
		return false, false
	}
	if last != "" {
		l, err := strconv.ParseInt(last, 10, 64)
		if err != nil || l < f {
			return false, false
		}
	}
	return f < size, true
}

// ifRange reports whether r's If-Range, if any, lets the Range apply:
// a strong ETag equal to the file's, or its exact Last-Modified date.
func ifRange(r *http.Request, fi *agentrpc.FileInfo) bool {
	ir := r.Header.Get("If-Range")
	switch {
	case ir == "":
		return true
	case strings.HasPrefix(ir, `"`):
		return ir == fi.ETag()
	}
	t, err := http.ParseTime(ir)
	return err == nil && fi.ModTime.Truncate(time.Second).Equal(t)
}
