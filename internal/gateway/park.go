package gateway

import (
	"context"
	"errors"
	"os"
	"time"
)

// A link waits here, parked, from its admission until the control plane
// takes it. The agent never speaks first (it is the RPC server), so a
// watcher reads one byte: it returns only when the agent hangs up (the
// link is dropped) or when Take interrupts it with a read deadline.

// park keeps l until the control plane takes it; a newer link of the same
// user replaces an untaken older one.
func (g *Gateway) park(l *Link) {
	l.watched = make(chan struct{})
	g.mu.Lock()
	if old := g.links[l.User]; old != nil {
		old.Conn.Close()
	}
	g.links[l.User] = l
	if ch := g.wake[l.User]; ch != nil {
		close(ch)
		delete(g.wake, l.User)
	}
	g.mu.Unlock()
	go g.watch(l)
}

func (g *Gateway) watch(l *Link) {
	defer close(l.watched)
	var b [1]byte
	n, err := l.Conn.Read(b[:])
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return // taken
	}
	// The agent hung up, or spoke out of turn: drop the link.
	l.dead = true
	l.Conn.Close()
	g.mu.Lock()
	if g.links[l.User] == l {
		delete(g.links, l.User)
	}
	g.mu.Unlock()
	g.cfg.Log.Info("parked agent link dropped", "user", l.User, "launch", l.LaunchID, "err", err, "bytes", n)
}

// claim stops l's watcher; it reports false if the link died meanwhile.
func claim(l *Link) bool {
	l.Conn.SetReadDeadline(time.Unix(1, 0))
	<-l.watched
	if l.dead {
		return false
	}
	l.Conn.SetReadDeadline(time.Time{})
	return true
}

// Take waits until an agent of user is connected and returns its link,
// which the caller then owns.
func (g *Gateway) Take(ctx context.Context, user string) (*Link, error) {
	for {
		if l := g.TryTake(user); l != nil {
			return l, nil
		}
		g.mu.Lock()
		if g.links[user] != nil { // parked since TryTake
			g.mu.Unlock()
			continue
		}
		ch := g.wake[user]
		if ch == nil {
			ch = make(chan struct{})
			g.wake[user] = ch
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryTake returns user's parked link, or nil.
func (g *Gateway) TryTake(user string) *Link {
	for {
		g.mu.Lock()
		l := g.links[user]
		delete(g.links, user)
		g.mu.Unlock()
		if l == nil {
			return nil
		}
		if claim(l) {
			return l
		}
	}
}

// Connected reports whether an untaken link of user is parked.
func (g *Gateway) Connected(user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.links[user] != nil
}

func (g *Gateway) closeParked() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for u, l := range g.links {
		l.Conn.Close()
		delete(g.links, u)
	}
}
