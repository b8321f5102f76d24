// Package config loads and validates the control plane's TOML configuration.
package config

import (
	"fmt"
	"octo/internal/bytesize"
	"time"
)

// Config is /etc/octo/config.toml.
type Config struct {
	Server    Server    `toml:"server"`
	Backend   Backend   `toml:"backend"`
	Local     Local     `toml:"local"`
	Users     Users     `toml:"users"`
	Container Container `toml:"container"`
	Slurm     Slurm     `toml:"slurm"`
}

// Server configures the control plane's own listeners and limits.
type Server struct {
	Listen    string `toml:"listen"`     // TCP address of the HTTP API
	APISocket string `toml:"api_socket"` // Unix socket of the HTTP API ("" disables it)
	StateDir  string `toml:"state_dir"`  // tokens live here
	// TLSCert and TLSKey are PEM files (absolute paths, or names of
	// systemd credentials): with them the TCP listener speaks only TLS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// MaxBodyBytes, if not 0, bounds each upload or input body (413 beyond).
	MaxBodyBytes ByteSize `toml:"max_body_bytes"`
	// MaxUploadsPerUser bounds one user's file uploads in progress (429 beyond).
	MaxUploadsPerUser int      `toml:"max_uploads_per_user"`
	BodyReadTimeout   Duration `toml:"body_read_timeout"` // a body may stall this long
	MaxHeaderBytes    ByteSize `toml:"max_header_bytes"`
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	AgentTimeout      Duration `toml:"agent_timeout"` // every agent call but output streams
	MaxStreamsPerUser int      `toml:"max_streams_per_user"`
	// MaxRequestsPerUser bounds one user's requests in flight (429 beyond).
	MaxRequestsPerUser int `toml:"max_requests_per_user"`
	// WriteStallTimeout is how long a response may make no progress
	// (the client reads nothing) before its connection is closed.
	WriteStallTimeout Duration `toml:"write_stall_timeout"`
	ShutdownTimeout   Duration `toml:"shutdown_timeout"`
	// DrainWindow is how long a stopping server keeps idle keep-alive
	// connections open for one more request, and when it ends streams.
	DrainWindow Duration `toml:"drain_window"`
	// AccessLogReads logs GET and HEAD requests too (one line each).
	AccessLogReads bool `toml:"access_log_reads"`
	// MetricsListen serves /metrics without authentication on this TCP
	// address, for a local scraper ("" = only /metrics on the API, for admins).
	MetricsListen string `toml:"metrics_listen"`
}

// Backend chooses where users' agents run.
type Backend struct {
	Mode string `toml:"mode"` // "local", "container", "auto" or "slurm"
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

// ParseByteSize parses a size as package bytesize does.
func ParseByteSize(s string) (ByteSize, error) {
	v, err := bytesize.Parse(s)
	return ByteSize(v), err
}
