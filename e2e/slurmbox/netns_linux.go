package slurmbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread that joined the network namespace at path.
// Sockets fn creates stay in that namespace. The thread is never unlocked,
// so it exits with the goroutine instead of serving others.
func inNetns(path string, fn func()) error {
	ns, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// Dial connects to address from node's network namespace ("ctl", "h1",
// "h2"), as a process on that node would.
func (c *Cluster) Dial(ctx context.Context, node, network, address string) (net.Conn, error) {
	path, err := c.NetnsPath(node)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	if nerr := inNetns(path, func() {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, address)
	}); nerr != nil {
		return nil, nerr
	}
	return conn, err
}

// Listen listens on address in the controller's network namespace, where
// the compute nodes reach it.
func (c *Cluster) Listen(network, address string) (net.Listener, error) {
	path, err := c.NetnsPath("ctl")
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if nerr := inNetns(path, func() { ln, err = net.Listen(network, address) }); nerr != nil {
		return nil, nerr
	}
	return ln, err
}
