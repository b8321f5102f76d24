package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"octo/internal/backend"
	"octo/internal/peercred"
	"octo/internal/tokens"
)

// Identity is who is calling, as the kernel (Unix socket) or a token said.
type Identity struct {
	Name  string // Linux user name
	Admin bool   // may act for other users with ?user=
	Via   string // "token ID" or "socket uid N"
}

type identityKey struct{}
type noCredKey struct{}

func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Name != ""
}

// ConnContext is the Unix socket server's http.Server.ConnContext: it records
// the connecting process's credentials, which then identify every request on
// the connection. Use it only for the Unix socket listener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peercred.Get(c)
	if err != nil {
		return context.WithValue(ctx, noCredKey{}, true)
	}
	return peercred.NewContext(ctx, cred)
}

// authenticated identifies the caller, runs the API and logs mutating requests.
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) {
	mutating := r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
	rec := w
	var sr *statusRecorder
	if mutating {
		sr = &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rec = sr
	}
	id, ok := s.identify(rec, r)
	if ok {
		s.route(rec, r.WithContext(withIdentity(r.Context(), id)))
	}
	if mutating {
		target := id.Name
		if q := queryValue(r, "user"); q != "" {
			target = q
		}
		s.log.Info("request", "user", id.Name, "as", target, "method", r.Method, "path", r.URL.Path, "status", sr.status)
	}
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	if cred, ok := peercred.FromContext(r.Context()); ok {
		name, err := s.cfg.Users.NameOf(cred.UID)
		if err != nil {
			writeError(w, http.StatusForbidden, "forbidden", "uid "+strconv.FormatUint(uint64(cred.UID), 10)+" has no user name")
			return Identity{}, false
		}
		return Identity{Name: name, Admin: cred.UID == 0, Via: "socket uid " + strconv.FormatUint(uint64(cred.UID), 10)}, true
	}
	if r.Context().Value(noCredKey{}) != nil {
		writeError(w, http.StatusUnauthorized, "unauthorized", "the kernel gave no peer credentials for this connection")
		return Identity{}, false
	}
	scheme, secret, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || s.cfg.Tokens == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="octo"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing token: send Authorization: Bearer TOKEN (create one with: octo token create USER)")
		return Identity{}, false
	}
	tok, err := s.cfg.Tokens.Authenticate(strings.TrimSpace(secret))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="octo", error="invalid_token"`)
		if errors.Is(err, tokens.ErrInvalid) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "invalid or revoked token")
		} else {
			s.log.Error("token store", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "token store unavailable")
		}
		return Identity{}, false
	}
	return Identity{Name: tok.User, Admin: tok.Admin, Via: "token " + tok.ID}, true
}

// target returns the caller and the user a request acts for: the caller, or
// with ?user=NAME (admins only) that user. It writes the error response
// itself when it returns false.
func (s *Server) target(w http.ResponseWriter, r *http.Request) (Identity, backend.User, bool) {
	id, ok := identityFrom(r.Context())
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "no caller identity")
		return id, backend.User{}, false
	}
	name := id.Name
	if q := queryValue(r, "user"); q != "" && q != id.Name {
		if !id.Admin {
			writeError(w, http.StatusForbidden, "forbidden", "only an admin may act for another user (?user=)")
			return id, backend.User{}, false
		}
		name = q
	}
	u, err := s.cfg.Users.Lookup(name)
	if err != nil {
		writeError(w, http.StatusForbidden, "user_not_served", err.Error())
		return id, backend.User{}, false
	}
	return id, u, true
}

// statusRecorder remembers the status for the request log and passes
// flushes through for streaming responses.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// queryValue is r.URL.Query().Get(name) without parsing an empty query.
func queryValue(r *http.Request, name string) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get(name)
}
