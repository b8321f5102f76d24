package agent

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// acceptGate pauses the accept loop without closing the listener, so that
// the idle exit is decided while nothing is being accepted: every
// connection accepted before the pause has been counted as busy.
type acceptGate struct {
	ln   interface{ SetDeadline(time.Time) error } // nil: the listener cannot pause
	quit <-chan struct{}

	mu       sync.Mutex
	pausing  bool
	ack      chan struct{} // the accept loop has stopped
	resumeCh chan struct{} // closed to let it go on
}

func newAcceptGate(ln net.Listener, quit <-chan struct{}) *acceptGate {
	g := &acceptGate{quit: quit}
	g.ln, _ = ln.(interface{ SetDeadline(time.Time) error })
	return g
}

// pause stops the accept loop and returns true once it has stopped; false
// when the listener cannot pause or the loop did not answer in time.
func (g *acceptGate) pause() bool {
	if g.ln == nil {
		return false
	}
	g.mu.Lock()
	g.pausing = true
	g.ack = make(chan struct{})
	g.resumeCh = make(chan struct{})
	ack := g.ack
	g.mu.Unlock()
	if g.ln.SetDeadline(time.Unix(1, 0)) != nil { // wakes a blocked Accept
		return false
	}
	select {
	case <-ack:
		return true
	case <-time.After(time.Second):
		return false // the loop is gone (it returned an error) or stuck
	}
}

// resume lets the accept loop go on.
func (g *acceptGate) resume() {
	g.ln.SetDeadline(time.Time{})
	g.mu.Lock()
	g.pausing = false
	close(g.resumeCh)
	g.mu.Unlock()
}

// paused is called by the accept loop with Accept's error: when the gate
// paused it, it reports the pause, waits for resume or shutdown, and returns
// true (the loop then accepts again, or finds the listener closed).
func (g *acceptGate) paused(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	g.mu.Lock()
	if !g.pausing {
		g.mu.Unlock()
		return false
	}
	ack, resume := g.ack, g.resumeCh
	g.mu.Unlock()
	select {
	case <-ack:
	default:
		close(ack)
	}
	select {
	case <-resume:
	case <-g.quit:
	}
	return true
}
