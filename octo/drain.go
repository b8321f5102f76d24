package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// drainer lets a stopping server answer every connection it accepted and
// close keep-alive connections only where no request can be on its way.
//
// From stop on, every response carries Connection: close, so each open
// connection is closed by the server right after its next response: the one
// in flight, or the one more request a client sends on an idle connection.
// A connection still idle at the end of the drain window is closed then;
// a busy client has sent on its connection long before.
//
// It also counts accepted connections whose first request has not reached
// a handler: http.Server.Shutdown drops a connection whose first request is
// read after Shutdown began (net/http checks for shutdown right after
// reading it), so such a request, handed over by the kernel just before we
// stopped accepting, would be lost. Shutdown waits until that count is zero.
type drainer struct {
	stopping atomic.Bool

	mu      sync.Mutex
	pending map[net.Conn]bool // accepted, first request not yet in a handler
	open    int               // connections not yet closed
}

type connKey struct{}

func newDrainer() *drainer { return &drainer{pending: map[net.Conn]bool{}} }

// connContext registers a new connection (wrap it around any other ConnContext).
func (d *drainer) connContext(next func(context.Context, net.Conn) context.Context) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		d.mu.Lock()
		d.pending[c] = true
		d.mu.Unlock()
		ctx = context.WithValue(ctx, connKey{}, c)
		if next != nil {
			ctx = next(ctx, c)
		}
		return ctx
	}
}

// connState counts open connections and forgets closed ones.
func (d *drainer) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		d.mu.Lock()
		d.open++
		d.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		d.mu.Lock()
		delete(d.pending, c)
		d.open--
		d.mu.Unlock()
	}
}

// handler marks a connection's request as having reached a handler, and
// once stopping, asks for the connection to be closed after the response
// (over HTTP/2, net/http sends GOAWAY instead).
func (d *drainer) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			d.mu.Lock()
			delete(d.pending, c)
			d.mu.Unlock()
		}
		if d.stopping.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// stop makes every later response close its connection.
func (d *drainer) stop() { d.stopping.Store(true) }

// counts returns the open connections and those waiting for their first
// request to reach a handler.
func (d *drainer) counts() (open, pending int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open, len(d.pending)
}

// waitClosed returns once every connection has closed (the clients took
// their Connection: close), or when ctx ends: the drain window is over.
func (d *drainer) waitClosed(ctx context.Context) {
	d.poll(ctx, func() bool { open, _ := d.counts(); return open <= 0 })
}

// waitPending returns once no accepted connection waits for its first
// request to reach a handler, or when ctx ends. Connections that send
// nothing are closed by ReadHeaderTimeout, so this ends.
func (d *drainer) waitPending(ctx context.Context) {
	d.poll(ctx, func() bool { _, p := d.counts(); return p == 0 })
}

func (d *drainer) poll(ctx context.Context, done func() bool) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
