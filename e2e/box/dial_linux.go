package box

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialContext connects to address from inside the box's network namespace
// (so "127.0.0.1:3000" is the box's loopback, not the host's). Unix socket
// paths are resolved on the host: use Path to reach one inside the box.
func (b *Box) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", b.pid))
	if err != nil {
		return nil, fmt.Errorf("open box network namespace: %w", err)
	}
	defer ns.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// The socket is created in the namespace of the calling thread. This
		// goroutine never unlocks its thread, so the thread, now in the box's
		// namespace, exits with the goroutine instead of serving others.
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter box network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.conn, r.err
}
