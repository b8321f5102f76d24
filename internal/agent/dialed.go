package agent

import (
	"net"

	"octo/internal/peercred"
)

// Credentialed is a connection that carries its peer's identity itself
// instead of the kernel's SO_PEERCRED: a link the agent dialed out to a
// control plane it verified (octo-agent-dial). Only the agent's own code
// builds such connections; a listener's Accept never yields one by itself.
type Credentialed interface {
	net.Conn
	PeerCred() (peercred.Cred, error)
}

// peerCred returns who is on the other end of c.
func peerCred(c net.Conn) (peercred.Cred, error) {
	if cc, ok := c.(Credentialed); ok {
		return cc.PeerCred()
	}
	return peercred.Get(c)
}
