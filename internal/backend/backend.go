// Package backend maps a user to the endpoint of their agent: a local socket
// (system or systemd --user agent), an agent in a container, or one placed
// by Slurm that dialed in.
//
// Router.SocketPath is the one place that builds an agent socket path. The
// package dials agents and checks who listens (SO_PEERCRED); it speaks no
// HTTP and opens no user path.
package backend

import (
	"context"
	"fmt"
	"net"
)

// User is a Linux user the control plane serves.
type User struct {
	Name string
	UID  uint32
	GID  uint32
	Home string
}

// Placement says where a user's agent runs.
type Placement string

// Placements.
const (
	PlacementSystem    Placement = "system"    // octo-agent@USER.service, socket in [local] socket_dir
	PlacementUser      Placement = "user"      // systemd --user octo-user.service, [local] user_socket
	PlacementContainer Placement = "container" // octo-agent in a container, through the Docker Engine API
	PlacementDev       Placement = "dev"       // in-process agent of `octo dev`
	PlacementSlurm     Placement = "slurm"     // a Slurm job on a cluster node, dialed in through the gateway
)

// Endpoint is where a user's agent listens.
type Endpoint struct {
	Placement Placement
	Socket    string // Unix socket path on the host
	// Link, for an agent that dialed in (PlacementSlurm), is its verified
	// connection, held by the gateway; Job says which job it is.
	Link net.Conn
	Job  *Job
}

// Job is the Slurm job of a dialed-in agent.
type Job struct {
	ID     string
	Node   string
	State  string // while pending, Reason says why
	Reason string
}

// ContainerRuntime runs users' agents in containers. The container package
// implements it; the backend calls it for PlacementContainer.
type ContainerRuntime interface {
	// Ping reports whether the engine answers; its error names the engine socket.
	Ping(ctx context.Context) error
	// Ensure returns once u's agent container is running and its agent listens
	// on sock (a host path whose directory the container bind-mounts), reusing
	// a running container labelled for u or replacing a dead one. Its errors
	// are *Error values.
	Ensure(ctx context.Context, u User, sock string) error
}

// Error codes of failures to reach an agent. The API reports them as they
// are and chooses the HTTP status for each.
const (
	CodeUnavailable = "agent_unavailable" // no agent to reach: no socket, refused, engine down
	CodeTimeout     = "agent_timeout"     // the agent did not answer in time
	CodeFailed      = "agent_failed"      // the agent (or its container) died before answering
)

// Error is a failure to reach a user's agent. Message says what to do about it.
type Error struct {
	Code    string
	Message string
	Err     error // underlying cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }
