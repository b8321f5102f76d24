package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/activation"

	"octo/internal/agentflags"
	"octo/internal/unixsock"
)

// listen returns the socket systemd passed (LISTEN_FDS), or binds --socket.
func listen(o *agentflags.Options) (ln net.Listener, activated bool, err error) {
	lns, err := activation.Listeners() // called once: it unsets LISTEN_FDS
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	switch {
	case len(lns) > 1:
		return nil, false, fmt.Errorf("socket activation: got %d sockets, want 1", len(lns))
	case len(lns) == 1 && lns[0] == nil:
		return nil, false, errors.New("socket activation: the passed socket is not a listening stream socket")
	case len(lns) == 1:
		return lns[0], true, nil
	}
	path := o.Socket
	if path == "" {
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return nil, false, errors.New("no socket: not socket-activated, no --socket and no $XDG_RUNTIME_DIR")
		}
		path = filepath.Join(rt, "octo-agent.sock")
	}
	ln, err = unixsock.Listen(path, o.SocketMode)
	return ln, false, err
}
