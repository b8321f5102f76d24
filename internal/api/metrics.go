package api

import (
	"net/http"
	"os"
)

// serveMetrics serves /metrics to admins: root or the control plane's own
// user on the Unix socket, and admin tokens. Others get 403.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		notFound(w, r)
		return
	}
	info := infoFrom(r.Context())
	if info == nil || !(info.caller.Admin || isSelf(r)) {
		writeError(w, http.StatusForbidden, "forbidden", "metrics are for admins: root or octo on the Unix socket, or an admin token (octo token create --admin); or scrape [server] metrics_listen")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

// isSelf reports whether r comes over the Unix socket from the control
// plane's own user (octo), as the kernel says.
func isSelf(r *http.Request) bool {
	peer, ok := r.Context().Value(socketPeerKey{}).(socketPeer)
	return ok && peer.err == nil && peer.cred.UID == uint32(os.Getuid())
}

// countAgentCall counts an agent call made for r: ok, or its error code.
func (s *Server) countAgentCall(r *http.Request, err error) {
	if s.cfg.Metrics == nil {
		return
	}
	route := ""
	if info := infoFrom(r.Context()); info != nil {
		route = info.route
	}
	result := "ok"
	if err != nil {
		_, result, _ = classify(err)
	}
	s.cfg.Metrics.AgentCall(route, result)
}
