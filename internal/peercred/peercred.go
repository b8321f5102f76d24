// Package peercred reports which process, user and group is on the other end of a Unix socket, as the kernel recorded it.
package peercred

import (
	"errors"
	"fmt"
)

// Cred is the kernel's record of a socket peer, taken when it connected.
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

func (c Cred) String() string { return fmt.Sprintf("pid=%d uid=%d gid=%d", c.PID, c.UID, c.GID) }

// ErrUnsupported is returned for connections that carry no peer credentials
// (anything but a Unix socket).
var ErrUnsupported = errors.New("peer credentials need a unix socket connection")
