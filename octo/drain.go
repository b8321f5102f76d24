package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// drainer lets a stopping server answer every connection it accepted.
//
// http.Server.Shutdown drops a connection whose first request is read after
// Shutdown began (net/http checks for shutdown right after reading it), so
// a request the kernel handed us just before we stopped accepting could be
// lost. The drainer counts accepted connections that have not yet reached a
// handler; the server closes its listeners, waits until that count is zero,
// and only then calls Shutdown.
type drainer struct {
	mu      sync.Mutex
	pending map[net.Conn]bool
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

// connState forgets closed connections.
func (d *drainer) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		d.done(c)
	}
}

// handler marks a connection's request as having reached a handler.
func (d *drainer) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			d.done(c)
		}
		next.ServeHTTP(w, r)
	})
}

func (d *drainer) done(c net.Conn) {
	d.mu.Lock()
	delete(d.pending, c)
	d.mu.Unlock()
}

// wait returns once no accepted connection waits for its first request to
// reach a handler, or when ctx ends. Connections that send nothing are
// closed by ReadHeaderTimeout, so this ends.
func (d *drainer) wait(ctx context.Context) {
	for {
		d.mu.Lock()
		n := len(d.pending)
		d.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}
