package api

import (
	"fmt"
	"net/http"
	"sync"
)

// perUser counts something each user holds (requests in flight, open
// streams) and refuses beyond max: what one user holds costs no one else.
type perUser struct {
	max int

	mu sync.Mutex
	n  map[string]int
}

func newPerUser(max int) *perUser { return &perUser{max: max, n: map[string]int{}} }

// acquire counts one more for user unless user is at the cap.
func (p *perUser) acquire(user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[user] >= p.max {
		return false
	}
	p.n[user]++
	return true
}

func (p *perUser) release(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[user]--; p.n[user] <= 0 {
		delete(p.n, user)
	}
}

// inUse reports how many user holds.
func (p *perUser) inUse(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[user]
}

// admit counts a request in flight for its caller, or refuses it with 429
// when the caller is at server.max_requests_per_user; the caller, not the
// user acted for, is who holds the connections. Release it with
// s.requests.release(t.Caller.Name).
func (s *Server) admit(w http.ResponseWriter, t target) bool {
	name := t.Caller.Name
	if !s.requests.acquire(name) {
		s.log.Warn("request refused", "user", name, "reason", "max_requests_per_user", "max", s.requests.max)
		writeError(w, http.StatusTooManyRequests, "limit", fmt.Sprintf("%s already has %d requests in flight (server.max_requests_per_user); retry when some have finished", name, s.requests.max))
		return false
	}
	return true
}
