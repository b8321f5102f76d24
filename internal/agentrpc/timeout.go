package agentrpc

import (
	"context"
	"sync"
	"time"
)

// WithTimeout is context.WithTimeout for agent calls, made for the hot path
// of a control plane that bounds every call. context.WithTimeout starts a
// timer and registers with its parent for every call, a measurable part of
// a small file GET (BenchmarkCallTimeout compares the two); this context
// costs one allocation, and Client.Call waits on a pooled timer only while
// a call is in flight.
//
// The result is a complete context: the first use of its Done (by a dialer,
// or a context derived from it) creates the context.WithTimeout equivalent,
// which cancel releases. Call cancel when done, as with the standard
// function; it also interrupts a Client.Call waiting on the context. One
// difference remains: until Done is asked for, context.Cause reports the
// parent's cause, not this context's deadline.
func WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	c := &timeoutCtx{Context: parent, deadline: time.Now().Add(d)}
	return c, c.cancel
}

type timeoutCtx struct {
	context.Context // the parent
	deadline        time.Time

	mu       sync.Mutex
	std      context.Context // context.WithDeadline(parent, deadline), once Done was asked for
	stop     context.CancelFunc
	canceled bool
	waiter   *time.Timer // armed by a Client.Call waiting without std
}

func (c *timeoutCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *timeoutCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std == nil {
		c.std, c.stop = context.WithDeadline(c.Context, c.deadline)
		if c.canceled {
			c.stop()
		}
	}
	return c.std.Done()
}

// Err agrees with Done without creating the standard context: Done closes
// when the parent is done, the deadline has passed or cancel was called.
func (c *timeoutCtx) Err() error {
	c.mu.Lock()
	std, canceled := c.std, c.canceled
	c.mu.Unlock()
	if std != nil {
		return std.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if canceled {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *timeoutCtx) cancel() {
	c.mu.Lock()
	c.canceled = true
	if c.waiter != nil {
		// Under mu, so the timer is still this call's (see disarm).
		c.waiter.Reset(0) // the waiting call wakes, and finds Err set
	}
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// arm sets t to fire at the deadline for a call about to wait on ctx. It
// reports false, leaving t alone, when the call must wait on ctx.Done()
// instead: the standard context exists, or ctx is canceled.
func (c *timeoutCtx) arm(t *time.Timer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.std != nil || c.canceled || c.waiter != nil {
		return false
	}
	c.waiter = t
	t.Reset(time.Until(c.deadline))
	return true
}

// disarm undoes arm once the call is over and pools t.
func (c *timeoutCtx) disarm(t *time.Timer) {
	c.mu.Lock()
	c.waiter = nil
	t.Stop() // under mu: cancel cannot Reset it afterwards
	c.mu.Unlock()
	timerPool.Put(t)
}

// waitTimer returns a pooled timer armed for ctx's deadline, or nil if a
// call must wait on ctx.Done() instead. Pass it to disarm when done.
func waitTimer(ctx context.Context) (*timeoutCtx, *time.Timer) {
	tc, ok := ctx.(*timeoutCtx)
	if !ok {
		return nil, nil
	}
	t := timerPool.Get().(*time.Timer)
	if !tc.arm(t) {
		timerPool.Put(t)
		return nil, nil
	}
	return tc, t
}

// timerPool holds stopped timers. Since Go 1.23 a stopped timer's channel
// holds no stale value, so a pooled timer is as good as a new one.
var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}
