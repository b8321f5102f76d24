package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where `octo serve` looks for its configuration when neither
// --config nor $OCTO_CONFIG names one.
const DefaultPath = "/etc/octo/config.toml"

// Backend modes.
const (
	ModeLocal     = "local"
	ModeContainer = "container"
	ModeAuto      = "auto"
)

// Default returns the configuration used for keys a file leaves out.
func Default() Config {
	return Config{
		Server: Server{
			Listen:            "0.0.0.0:3000",
			APISocket:         "/run/octo/octo.sock",
			StateDir:          "/var/lib/octo",
			MaxUploadsPerUser: 8,
			BodyReadTimeout:   Duration{2 * time.Minute},
			MaxHeaderBytes:    64 << 10,
			ReadHeaderTimeout: Duration{10 * time.Second},
			AgentTimeout:      Duration{30 * time.Second},
			MaxStreamsPerUser: 16,
			ShutdownTimeout:   Duration{30 * time.Second},
		},
		Backend: Backend{Mode: ModeLocal},
		Local: Local{
			SocketDir:      "/run/octo",
			UserSocket:     "/run/user/{uid}/octo-agent.sock",
			ConnectTimeout: Duration{5 * time.Second},
		},
		Users: Users{MinUID: 1000},
		Container: Container{
			Image:       "debian:12-slim",
			AgentBinary: "/usr/local/bin/octo-agent",
			Workspace:   "{home}",
			SocketDir:   "/run/octo/containers",
			Network:     "none",
			IdleTimeout: Duration{15 * time.Minute},
			// Bounded by default: one user's fork bomb or leak must not take the host.
			Memory: 4 << 30,
			PIDs:   4096,
		},
	}
}

// Load reads the configuration at path over the defaults. A missing file
// gives the defaults; an invalid one gives an error naming the file, the line
// where the parser knows it, and the key.
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(path, string(data), &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Parse decodes TOML text (named name in errors) over cfg and validates the result.
// Unknown keys are errors.
func Parse(name, text string, cfg *Config) error {
	md, err := toml.Decode(text, cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if msg == "" {
				msg = strings.TrimPrefix(pe.Error(), "toml: ")
			}
			if pe.LastKey != "" {
				return fmt.Errorf("%s:%d: key %s: %s", name, pe.Position.Line, pe.LastKey, msg)
			}
			return fmt.Errorf("%s:%d: %s", name, pe.Position.Line, msg)
		}
		// Type mismatches carry "line N (last key K)" in their text.
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "toml: "))
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown key %s (see testdata/config.example.toml for the keys octo knows)", name, strings.Join(keys, ", "))
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// keyError is a validation failure of one key.
func keyError(key, format string, args ...any) error {
	return fmt.Errorf("key %s: %s", key, fmt.Sprintf(format, args...))
}

func (c *Config) validate() error {
	s := c.Server
	if s.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			return keyError("server.listen", "%q is not host:port (e.g. \"0.0.0.0:3000\"; \"\" disables TCP)", s.Listen)
		}
	}
	if s.APISocket != "" && !filepath.IsAbs(s.APISocket) {
		return keyError("server.api_socket", "%q must be an absolute path (\"\" disables it)", s.APISocket)
	}
	if !filepath.IsAbs(s.StateDir) {
		return keyError("server.state_dir", "%q must be an absolute path", s.StateDir)
	}
	for _, b := range []struct {
		key string
		v   ByteSize
		min ByteSize
	}{
		{"server.max_body_bytes", s.MaxBodyBytes, 0},
		{"server.max_header_bytes", s.MaxHeaderBytes, 1 << 10},
	} {
		if b.v < b.min {
			return keyError(b.key, "%d is too small (at least %d)", b.v, b.min)
		}
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"server.read_header_timeout", s.ReadHeaderTimeout},
		{"server.body_read_timeout", s.BodyReadTimeout},
		{"server.agent_timeout", s.AgentTimeout},
		{"server.shutdown_timeout", s.ShutdownTimeout},
		{"local.connect_timeout", c.Local.ConnectTimeout},
	} {
		if d.v.Duration <= 0 {
			return keyError(d.key, "must be a positive duration such as \"10s\"")
		}
	}
	if s.MaxUploadsPerUser < 1 {
		return keyError("server.max_uploads_per_user", "%d must be at least 1", s.MaxUploadsPerUser)
	}
	if s.MaxStreamsPerUser < 1 {
		return keyError("server.max_streams_per_user", "%d must be at least 1", s.MaxStreamsPerUser)
	}
	switch c.Backend.Mode {
	case ModeLocal, ModeContainer, ModeAuto:
	default:
		return keyError("backend.mode", "%q is not one of \"local\", \"container\", \"auto\"", c.Backend.Mode)
	}
	if !filepath.IsAbs(c.Local.SocketDir) {
		return keyError("local.socket_dir", "%q must be an absolute path", c.Local.SocketDir)
	}
	if c.Local.UserSocket != "" && !filepath.IsAbs(c.Local.UserSocket) {
		return keyError("local.user_socket", "%q must be an absolute path (\"\" disables user agents)", c.Local.UserSocket)
	}
	for _, name := range c.Users.Allow {
		if name == "" || strings.ContainsAny(name, "/: \t\n") {
			return keyError("users.allow", "%q is not a user name", name)
		}
	}
	if c.Backend.Mode != ModeLocal {
		return c.Container.validate()
	}
	return nil
}

func (c Container) validate() error {
	if !filepath.IsAbs(c.SocketDir) {
		return keyError("container.socket_dir", "%q must be an absolute path", c.SocketDir)
	}
	if c.Image == "" {
		return keyError("container.image", "must name an image for backend.mode container or auto")
	}
	if c.Memory < 0 || c.CPUs < 0 || c.PIDs < 0 {
		return keyError("container", "memory, cpus and pids must not be negative (0 = no limit)")
	}
	return nil
}
