package agent

import (
	"sync"
	"time"
)

// idleTracker fires once the agent has had nothing to do (no connection, no
// running session) for a timeout. A zero timeout never fires.
type idleTracker struct {
	timeout time.Duration
	fire    chan struct{}

	mu       sync.Mutex
	busy     int
	gen      uint64 // bumped on every busy/idle change, so a stale timer cannot fire
	timer    *time.Timer
	running  bool
	hasFired bool // the timeout passed; quiet until rearm
}

func newIdleTracker(timeout time.Duration) *idleTracker {
	return &idleTracker{timeout: timeout, fire: make(chan struct{}, 1)}
}

// fired receives when the idle timeout has passed. The tracker then stays
// quiet until rearm.
func (t *idleTracker) fired() <-chan struct{} { return t.fire }

// idleNow reports whether nothing keeps the agent alive.
func (t *idleTracker) idleNow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busy == 0
}

// rearm lets the tracker fire again, after an idle exit was called off.
func (t *idleTracker) rearm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hasFired = false
	t.arm()
}

// start arms the tracker; before it, busy/idle changes are only counted.
func (t *idleTracker) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running = true
	t.arm()
}

func (t *idleTracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running = false
	t.gen++
	if t.timer != nil {
		t.timer.Stop()
	}
}

// inc marks the start of something that keeps the agent alive.
func (t *idleTracker) inc() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busy++
	t.gen++
	if t.timer != nil {
		t.timer.Stop()
	}
}

// dec marks its end.
func (t *idleTracker) dec() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busy--
	t.gen++
	t.arm()
}

// arm starts the idle timer if the agent is idle. t.mu must be held.
func (t *idleTracker) arm() {
	if !t.running || t.timeout <= 0 || t.busy > 0 || t.hasFired {
		return
	}
	gen := t.gen
	if t.timer != nil {
		t.timer.Stop()
	}
	t.timer = time.AfterFunc(t.timeout, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if gen != t.gen || t.busy > 0 || !t.running || t.hasFired {
			return
		}
		t.hasFired = true
		select {
		case t.fire <- struct{}{}:
		default:
		}
	})
}
