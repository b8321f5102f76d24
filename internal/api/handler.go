package api

import (
	"context"
	"net/http"
	"time"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// This file is where a request becomes an agent call: every route that acts
// for a user is registered through forUser, which resolves the caller and
// the user acted for once, and its handler reaches the agent through
// agentCall.

// target is whom a request comes from and whom it acts for.
type target struct {
	Caller Identity     // who calls, as the kernel or a token said
	User   backend.User // the caller, or with ?user=NAME (admins only) that user
}

// userHandler serves a request whose target is resolved.
type userHandler func(w http.ResponseWriter, r *http.Request, t target)

// forUser resolves r's target and runs h with it. It refuses a request that
// reached it without an identity (ConnContext or a token must have set one),
// a non-admin acting for someone else, a user octo does not serve, and a
// caller with server.max_requests_per_user requests in flight.
func (s *Server) forUser(h userHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t, ok := s.target(w, r); ok && s.admit(w, t) {
			defer s.requests.release(t.Caller.Name)
			h(w, r, t)
		}
	}
}

// target returns r's target, or writes the error response and false.
func (s *Server) target(w http.ResponseWriter, r *http.Request) (target, bool) {
	info := infoFrom(r.Context())
	if info == nil || info.caller.Name == "" {
		writeError(w, http.StatusUnauthorized, "unauthorized", "no caller identity")
		return target{}, false
	}
	info.route = servedRoute(r) // for the agent call counts
	id := info.caller
	name := id.Name
	if q := queryValue(r, "user"); q != "" && q != id.Name {
		// Acting for another user is an admin's right only: the caller's
		// identity came from the kernel or a token, never from the request.
		if !id.Admin {
			writeError(w, http.StatusForbidden, "forbidden", "only an admin may act for another user (?user=)")
			return target{}, false
		}
		name = q
	}
	info.user = name
	u, err := s.cfg.Users.Lookup(name)
	if err != nil {
		writeError(w, http.StatusForbidden, "user_not_served", err.Error())
		return target{}, false
	}
	return target{Caller: id, User: u}, true
}

// agentCall runs fn against u's agent within the agent timeout (plus extra,
// for calls that wait on purpose). When the call fails it writes the error
// response and returns false.
func (s *Server) agentCall(w http.ResponseWriter, r *http.Request, u backend.User, safety backend.Safety, fn func(ctx context.Context, c *agentrpc.Client) error) (backend.Endpoint, bool) {
	ep, err := s.call(r, u, safety, 0, fn)
	if err != nil {
		s.agentError(w, r, err)
		return ep, false
	}
	return ep, true
}

// call runs one agent call for u within the agent timeout plus extra.
func (s *Server) call(r *http.Request, u backend.User, safety backend.Safety, extra time.Duration, fn func(ctx context.Context, c *agentrpc.Client) error) (backend.Endpoint, error) {
	ctx, cancel := agentrpc.WithTimeout(r.Context(), s.cfg.AgentTimeout+extra)
	defer cancel()
	ep, err := s.cfg.Pool.Do(ctx, u, safety, func(c *agentrpc.Client) error { return fn(ctx, c) })
	s.countAgentCall(r, err)
	return ep, err
}
