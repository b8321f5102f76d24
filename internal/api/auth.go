package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"octo/internal/peercred"
	"octo/internal/tokens"
)

// Identity is who is calling, as the kernel (Unix socket) or a token said.
type Identity struct {
	Name  string // Linux user name
	Admin bool   // may act for other users with ?user=
	Via   string // "token ID" or "socket uid N"
}

// requestInfo is what the API learns about a request as it is served: who
// calls (set once, when authenticated) and the user it acts for (set when
// the target is resolved), for the request's log line.
type requestInfo struct {
	caller Identity
	user   string
	route  string // the pattern serving it (observe.go)
}

type requestInfoKey struct{}

func withIdentity(ctx context.Context, id Identity) context.Context {
	if info := infoFrom(ctx); info != nil && info.caller.Name == "" {
		info.caller = id // the one observe made for this request
		return ctx
	}
	return context.WithValue(ctx, requestInfoKey{}, &requestInfo{caller: id})
}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// socketPeer is what the kernel said about a Unix socket connection: the
// peer's credentials, or why there are none.
type socketPeer struct {
	cred peercred.Cred
	err  error
}

type socketPeerKey struct{}

// ConnContext is the Unix socket server's http.Server.ConnContext: it records
// the connecting process's credentials, which then identify every request on
// the connection. Use it only for the Unix socket listener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peercred.Get(c)
	return context.WithValue(ctx, socketPeerKey{}, socketPeer{cred, err})
}

// authenticated identifies the caller and runs the API. (observe logs
// the request.)
func (s *Server) authenticated(w http.ResponseWriter, r *http.Request) {
	id, ok := s.identify(w, r)
	if !ok {
		return
	}
	if ctx := withIdentity(r.Context(), id); ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	s.route(w, r)
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) (Identity, bool) {
	if peer, ok := r.Context().Value(socketPeerKey{}).(socketPeer); ok {
		// On the Unix socket the kernel says who calls; nothing in the
		// request can change that, and no credentials means no entry.
		if peer.err != nil {
			writeError(w, http.StatusUnauthorized, "unauthorized", "the kernel gave no peer credentials for this connection")
			return Identity{}, false
		}
		cred := peer.cred
		name, err := s.cfg.Users.NameOf(cred.UID)
		if err != nil {
			writeError(w, http.StatusForbidden, "forbidden", "uid "+strconv.FormatUint(uint64(cred.UID), 10)+" has no user name")
			return Identity{}, false
		}
		return Identity{Name: name, Admin: cred.UID == 0, Via: "socket uid " + strconv.FormatUint(uint64(cred.UID), 10)}, true
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

// queryValue is r.URL.Query().Get(name) without parsing an empty query.
func queryValue(r *http.Request, name string) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get(name)
}
