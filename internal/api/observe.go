package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// This file observes every request once, wrapping the ResponseWriter and
// the body: status, bytes each way, duration and route, which feed both
// the access log line and the metrics.

// exchange is one request as it is served. Its info is the request's
// requestInfo: authenticated fills in the caller, target the user.
type exchange struct {
	http.ResponseWriter
	info     requestInfo
	status   int
	wrote    bool
	sent     int64 // response body bytes
	received int64 // request body bytes read
	errCode  string
}

func (e *exchange) WriteHeader(code int) {
	if !e.wrote && code >= 200 { // 1xx are interim
		e.status, e.wrote = code, true
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *exchange) Write(b []byte) (int, error) {
	if !e.wrote {
		e.status, e.wrote = http.StatusOK, true
	}
	n, err := e.ResponseWriter.Write(b)
	e.sent += int64(n)
	return n, err
}

// ReadFrom keeps the server's sendfile path for bodies copied from files.
func (e *exchange) ReadFrom(src io.Reader) (int64, error) {
	if !e.wrote {
		e.status, e.wrote = http.StatusOK, true
	}
	var n int64
	var err error
	if rf, ok := e.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{e.ResponseWriter}, src)
	}
	e.sent += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines, hijack).
func (e *exchange) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// countingBody counts the request body bytes handlers read.
type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	*b.n += int64(n)
	return n, err
}

// noteErrorCode records the error code of a response on its exchange.
func noteErrorCode(w http.ResponseWriter, code string) {
	for w != nil {
		if e, ok := w.(*exchange); ok {
			e.errCode = code
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// observe serves r with h through an exchange, then writes the access log
// line and counts the request.
func (s *Server) observe(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	start := time.Now()
	ex := &exchange{ResponseWriter: w, status: http.StatusOK}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = countingBody{r.Body, &ex.received}
	}
	h(ex, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, &ex.info)))
	d := time.Since(start)
	if ex.info.route == "" { // never reached target: refused or unrouted
		ex.info.route = s.routeOf(r)
	}
	route := ex.info.route
	s.cfg.Metrics.Request(route, ex.status, d, ex.received, ex.sent)
	switch {
	case ex.status == http.StatusTooManyRequests:
		s.cfg.Metrics.LimitHit(route, ex.errCode)
	case ex.status == http.StatusCreated && route == routeStartSession:
		s.cfg.Metrics.SessionStarted()
	}
	if s.cfg.QuietReads && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return
	}
	s.accessLog(r, ex, d)
}

// accessLog writes the request's one log line. "user" is whom it acted
// for (with ?user=, not the caller, who is then "caller").
func (s *Server) accessLog(r *http.Request, ex *exchange, d time.Duration) {
	attrs := make([]slog.Attr, 0, 9)
	user, caller := ex.info.user, ex.info.caller.Name
	if user == "" {
		user = caller
	}
	if user != "" {
		attrs = append(attrs, slog.String("user", user))
	}
	if caller != "" && caller != user {
		attrs = append(attrs, slog.String("caller", caller))
	}
	attrs = append(attrs, slog.String("route", ex.info.route), slog.String("path", r.URL.Path),
		slog.Int("status", ex.status), slog.Int64("bytes", ex.sent), slog.Duration("duration", d))
	if ex.received > 0 {
		attrs = append(attrs, slog.Int64("received", ex.received))
	}
	if id := sessionIDOf(ex.info.route, r.URL.Path); id != "" {
		attrs = append(attrs, slog.String("session", id))
	}
	if ex.errCode != "" {
		attrs = append(attrs, slog.String("code", ex.errCode))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

const routeStartSession = "POST /api/v1/sessions"

// routeOf is r's route: the pattern that serves it, never the raw path, so
// that metrics label values stay few.
func (s *Server) routeOf(r *http.Request) string {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return "GET /healthz"
	}
	if route := servedRoute(r); route != "" {
		return route
	}
	if _, pattern := s.mux.Handler(r); pattern != "" && pattern != "/" {
		return pattern
	}
	return "unmatched"
}

// servedRoute is the route of a request being served: the mux's pattern
// (r.Pattern), or one of the files routes, which the Server dispatches
// itself; "" for neither.
func servedRoute(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, filesPrefix); ok && (rest == "" || rest[0] == '/') {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return "GET /api/v1/files/{path...}"
		case http.MethodPut:
			return "PUT /api/v1/files/{path...}"
		case http.MethodDelete:
			return "DELETE /api/v1/files/{path...}"
		case http.MethodPost:
			return "POST /api/v1/files/{path...}"
		}
	}
	return ""
}

// sessionIDOf is the session id in path when route names one.
func sessionIDOf(route, path string) string {
	if !strings.Contains(route, "{id}") {
		return ""
	}
	rest, ok := strings.CutPrefix(path, "/api/v1/sessions/")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}
