// Package api is the control plane's HTTP API: it authenticates callers and
// relays their requests to their own agent.
//
// It never forks a user process nor opens a user path: it reaches agents
// only through package backend (handler.go is where a request becomes an
// agent call), and moves file bytes through descriptors the agent opened.
// It does not import package agent.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/metrics"
	"octo/internal/tokens"
)

// Config configures a Server.
type Config struct {
	Pool   *backend.Pool
	Users  *backend.Users
	Tokens *tokens.Store // nil: bearer tokens are refused
	Log    *slog.Logger
	// Version is reported by /api/v1/status.
	Version string
	// MaxBodyBytes, if positive, bounds each file upload and session input
	// body (413 beyond); 0 means no limit: bodies stream with bounded memory.
	MaxBodyBytes int64
	// MaxUploadsPerUser bounds one user's file uploads in progress (429
	// beyond), so that one user's uploads cost only that user.
	MaxUploadsPerUser int
	// BodyReadTimeout bounds receiving a session input body, and how long
	// an upload body may stall (408 beyond): each arriving byte of an
	// upload gives the client this long again.
	BodyReadTimeout time.Duration
	// AgentTimeout bounds every agent call except output streams.
	AgentTimeout time.Duration
	// MaxStreamsPerUser bounds concurrent output streams of one user (429 beyond).
	MaxStreamsPerUser int
	// MaxRequestsPerUser bounds one caller's requests in flight (429 beyond).
	MaxRequestsPerUser int
	// Metrics counts every request (nil: none); admins read them at /metrics.
	Metrics *metrics.Metrics
	// QuietReads leaves GET and HEAD requests out of the access log.
	QuietReads bool
}

// Server serves the API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	streams  *perUser // output streams, by user acted for
	requests *perUser // requests in flight, by caller

	uploads *perUser // each user's uploads in progress

	// ending is canceled by EndStreams: output streams then end cleanly.
	ending    context.Context
	endStream context.CancelFunc
}

// DefaultMaxUploadsPerUser is MaxUploadsPerUser's default.
const DefaultMaxUploadsPerUser = 8

// maxJSONBody bounds JSON request bodies.
const maxJSONBody = 1 << 20

// New returns a server. Its Handler serves both listeners: callers on the
// Unix socket are identified by ConnContext, TCP callers by bearer token.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxUploadsPerUser <= 0 {
		cfg.MaxUploadsPerUser = DefaultMaxUploadsPerUser
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = 2 * time.Minute
	}
	if cfg.AgentTimeout <= 0 {
		cfg.AgentTimeout = 30 * time.Second
	}
	if cfg.MaxStreamsPerUser <= 0 {
		cfg.MaxStreamsPerUser = 16
	}
	if cfg.MaxRequestsPerUser <= 0 {
		cfg.MaxRequestsPerUser = 256
	}
	s := &Server{cfg: cfg, log: cfg.Log, uploads: newPerUser(cfg.MaxUploadsPerUser),
		streams: newPerUser(cfg.MaxStreamsPerUser), requests: newPerUser(cfg.MaxRequestsPerUser)}
	s.ending, s.endStream = context.WithCancel(context.Background())
	s.mux = s.routes()
	return s
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	for pattern, h := range map[string]userHandler{
		"GET /api/v1/status":                s.status,
		"POST /api/v1/sessions":             s.startSession,
		"GET /api/v1/sessions":              s.listSessions,
		"GET /api/v1/sessions/{id}":         s.getSession,
		"DELETE /api/v1/sessions/{id}":      s.stopSession,
		"POST /api/v1/sessions/{id}/signal": s.signalSession,
		"POST /api/v1/sessions/{id}/input":  s.inputSession,
		"POST /api/v1/sessions/{id}/resize": s.resizeSession,
		"GET /api/v1/sessions/{id}/output":  s.output,
		"POST /api/v1/sessions/{id}/attach": s.attach,
	} {
		m.HandleFunc(pattern, s.forUser(h))
	}
	m.HandleFunc("GET /metrics", s.serveMetrics)
	m.HandleFunc("/", notFound)
	return m
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path+" (see the README for the API)")
}

// filesPrefix starts the files routes, which the Server dispatches itself:
// ServeMux would clean their paths and redirect, so that
// /api/v1/files//etc/passwd became /api/v1/files/etc/passwd, a different
// file than asked for. Instead the path after the one separating slash goes
// to the agent unchanged, and the agent judges it (an absolute path or one
// leaving the workspace is 403 outside_workspace).
const filesPrefix = "/api/v1/files"

// serveFiles serves r if it is a files request and reports whether it was.
func (s *Server) serveFiles(w http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, filesPrefix)
	if !ok || rest != "" && rest[0] != '/' {
		return false
	}
	// The path as the client sent it, after the slash that ends
	// /api/v1/files/: an absolute or escaping path is the agent's to
	// refuse, never silently made relative.
	p := strings.TrimPrefix(rest, "/")
	var h func(http.ResponseWriter, *http.Request, target, string)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h = s.getFile
	case http.MethodPut:
		h = s.putFile
	case http.MethodDelete:
		h = s.deleteFile
	case http.MethodPost:
		h = s.postFile
	default:
		notFound(w, r)
		return true
	}
	// As forUser does for the mux's routes.
	if t, ok := s.target(w, r); ok && s.admit(w, t) {
		defer s.requests.release(t.Caller.Name)
		h(w, r, t, p)
	}
	return true
}

// route serves r through the files routes or the mux. A path the mux would
// clean and redirect (such as /api//v1/files//etc/passwd) is refused: the
// redirect could name a different file than the one asked for.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if s.serveFiles(w, r) {
		return
	}
	if c := cleanPath(r.URL.Path); c != r.URL.Path {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("request path %q has empty, . or .. segments; send it as %q if that is what you mean", r.URL.Path, c))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is the path ServeMux would redirect p to.
func cleanPath(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// Handler returns the API's handler: /healthz without authentication,
// everything else behind it; every request observed (observe.go).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.observe(w, r, s.serve) })
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
		return
	}
	s.authenticated(w, r)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, t target) {
	var info agentrpc.Info
	ep, ok := s.agentCall(w, r, t.User, backend.Repeatable, func(ctx context.Context, c *agentrpc.Client) (err error) {
		info, err = c.Info(ctx)
		return err
	})
	if !ok {
		return
	}
	s.cfg.Metrics.AgentSeen(t.User.Name, info.PID)
	var job *jobJSON
	if ep.Job != nil {
		job = &jobJSON{ID: ep.Job.ID, Node: ep.Job.Node}
	}
	writeJSON(w, http.StatusOK, statusJSON{
		Job:       job,
		Version:   s.cfg.Version,
		Mode:      s.cfg.Pool.Router().Mode(),
		Caller:    callerJSON{User: t.Caller.Name, Admin: t.Caller.Admin, Via: t.Caller.Via},
		User:      t.User.Name,
		Placement: string(ep.Placement),
		Agent:     infoOf(info),
	})
}

// EndStreams ends every output stream, now and from now on, with a clean
// end of stream (the next offset in the trailer, or the last event id) from
// which the client resumes, on the next instance when this one is stopping.
// Call it when the server shuts down (http.Server.RegisterOnShutdown).
func (s *Server) EndStreams() { s.endStream() }

// streamContext is r's context, also canceled by EndStreams.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.ending, cancel)
	return ctx, func() { stop(); cancel() }
}
