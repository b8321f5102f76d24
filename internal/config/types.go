// Package config loads and validates the control plane's TOML configuration.
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is /etc/octo/config.toml.
type Config struct {
	Server    Server    `toml:"server"`
	Backend   Backend   `toml:"backend"`
	Local     Local     `toml:"local"`
	Users     Users     `toml:"users"`
	Container Container `toml:"container"`
}

// Server configures the control plane's own listeners and limits.
type Server struct {
	Listen    string `toml:"listen"`     // TCP address of the HTTP API
	APISocket string `toml:"api_socket"` // Unix socket of the HTTP API ("" disables it)
	StateDir  string `toml:"state_dir"`  // tokens live here
	// MaxBodyBytes, if not 0, bounds each upload or input body (413 beyond).
	MaxBodyBytes ByteSize `toml:"max_body_bytes"`
	// MaxUploadsPerUser bounds one user's file uploads in progress (429 beyond).
	MaxUploadsPerUser int      `toml:"max_uploads_per_user"`
	BodyReadTimeout   Duration `toml:"body_read_timeout"` // a body may stall this long
	MaxHeaderBytes    ByteSize `toml:"max_header_bytes"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	AgentTimeout      Duration `toml:"agent_timeout"` // every agent call but output streams
	MaxStreamsPerUser int      `toml:"max_streams_per_user"`
	ShutdownTimeout   Duration `toml:"shutdown_timeout"`
}

// Backend chooses where users' agents run.
type Backend struct {
	Mode string `toml:"mode"` // "local", "container" or "auto"
}

// Local configures agents that systemd runs on the host.
type Local struct {
	SocketDir      string   `toml:"socket_dir"`  // system agents: SocketDir/agent-USER.sock
	UserSocket     string   `toml:"user_socket"` // systemd --user agents; {uid} is replaced
	ConnectTimeout Duration `toml:"connect_timeout"`
}

// Users says which Linux users may be served.
type Users struct {
	Allow  []string `toml:"allow"`   // user names; listed names may be below MinUID
	Group  string   `toml:"group"`   // members of this group may be served
	MinUID uint32   `toml:"min_uid"` // never serve uids below this unless listed in Allow
}

// Container configures the container backend.
type Container struct {
	EngineSocket string   `toml:"engine_socket"` // "" = first that answers of /run/podman/podman.sock, /var/run/docker.sock
	Image        string   `toml:"image"`
	AgentBinary  string   `toml:"agent_binary"` // host octo-agent, bind-mounted read-only
	Workspace    string   `toml:"workspace"`    // host path pattern with {user} and {home}, mounted read-write at the same path
	SocketDir    string   `toml:"socket_dir"`   // host directory for per-user agent sockets: SocketDir/USER/agent.sock
	Memory       ByteSize `toml:"memory"`       // 0 = no limit
	CPUs         float64  `toml:"cpus"`         // 0 = no limit
	PIDs         int64    `toml:"pids"`         // 0 = no limit
	Network      string   `toml:"network"`      // default "none"
	IdleTimeout  Duration `toml:"idle_timeout"` // the agent's --idle-timeout inside the container
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration such as "1m30s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"10s\", \"5m\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// ByteSize is a size in bytes, written as a number or a string with a
// binary unit suffix: "512k", "64M", "2g".
type ByteSize int64

// UnmarshalText parses a size such as "64M".
func (s *ByteSize) UnmarshalText(b []byte) error {
	v, err := ParseByteSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseByteSize parses "123", "512k", "64M", "2G" (powers of 1024; a trailing "b"/"iB" is allowed).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "ib"), "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		case 't':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (use e.g. 1048576, \"512k\", \"64M\", \"2G\")", s)
	}
	return ByteSize(v * mult), nil
}
