package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
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
			Listen:             "0.0.0.0:3000",
			APISocket:          "/run/octo/octo.sock",
			StateDir:           "/var/lib/octo",
			MaxUploadsPerUser:  8,
			BodyReadTimeout:    Duration{2 * time.Minute},
			MaxHeaderBytes:     64 << 10,
			ReadHeaderTimeout:  Duration{10 * time.Second},
			AgentTimeout:       Duration{30 * time.Second},
			MaxStreamsPerUser:  16,
			MaxRequestsPerUser: 256,
			WriteStallTimeout:  Duration{30 * time.Second},
			ShutdownTimeout:    Duration{30 * time.Second},
			DrainWindow:        Duration{time.Second},
			AccessLogReads:     true,
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
		Slurm: defaultSlurm(),
	}
}

// ErrNoConfig reports an explicitly named config file that does not exist.
var ErrNoConfig = errors.New("no such config file")

// Load reads the configuration at path over the defaults. Only DefaultPath
// may be missing, giving the defaults: a file someone named (--config,
// $OCTO_CONFIG) that is not there is an error wrapping ErrNoConfig, never
// silently the defaults (which listen on every interface). An invalid file
// gives an error naming the file, the line and the key.
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if path == DefaultPath {
			return cfg, nil
		}
		return cfg, fmt.Errorf("%s: %w (check --config and $OCTO_CONFIG; only the default %s may be missing)", path, ErrNoConfig, DefaultPath)
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
// Unknown keys are errors naming their line and the nearest known key.
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
		return unknownKeys(name, text, und)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// unknownKeys is the error for keys octo does not know: each with its line
// and, when one is close, the known key it probably means.
func unknownKeys(name, text string, und []toml.Key) error {
	known := KnownKeys()
	msgs := make([]string, 0, len(und))
	for _, k := range und {
		key := strings.Join(k, ".")
		pos := name
		if line := keyLine(text, k); line > 0 {
			pos = fmt.Sprintf("%s:%d", name, line)
		}
		msg := fmt.Sprintf("%s: unknown key %s", pos, key)
		if near := nearest(key, known); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		} else {
			msg += " (see testdata/config.example.toml for the keys octo knows)"
		}
		msgs = append(msgs, msg)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// KnownKeys lists every key of the file, "section.key", from Config's toml tags.
func KnownKeys() []string {
	var keys []string
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		sec := ct.Field(i)
		st := sec.Type
		keys = append(keys, sec.Tag.Get("toml"))
		for j := range st.NumField() {
			if tag := st.Field(j).Tag.Get("toml"); tag != "" {
				keys = append(keys, sec.Tag.Get("toml")+"."+tag)
			}
		}
	}
	return keys
}

// keyLine finds the line that sets key: a "key =" line under its [table]
// header, or a dotted key. It returns 0 when it cannot tell (an inline
// table, say).
func keyLine(text string, key toml.Key) int {
	want := strings.Join(key, ".")
	table := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			end := strings.LastIndex(line, "]")
			if end < 0 {
				continue
			}
			table = unquoteKey(strings.Trim(line[:end], "[] \t"))
			if table == want {
				return i + 1
			}
		case line != "" && line[0] != '#':
			k, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			full := unquoteKey(k)
			if table != "" {
				full = table + "." + full
			}
			if full == want || strings.HasPrefix(want, full+".") {
				return i + 1
			}
		}
	}
	return 0
}

// unquoteKey turns `a . "b"` into a.b.
func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// nearest returns the known key closest to key in edit distance, if it is
// close enough to be a typo, else "".
func nearest(key string, known []string) string {
	best, bestD := "", len(key)/3+1
	if bestD > 3 {
		bestD = 3
	}
	for _, k := range known {
		if d := editDistance(key, k); d <= bestD && (best == "" || d < editDistance(key, best)) {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			return keyError("server.metrics_listen", "%q is not host:port (e.g. \"127.0.0.1:9100\"; \"\" disables it)", s.MetricsListen)
		}
	}
	if s.APISocket != "" && !filepath.IsAbs(s.APISocket) {
		return keyError("server.api_socket", "%q must be an absolute path (\"\" disables it)", s.APISocket)
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return keyError("server.tls_cert", "server.tls_cert and server.tls_key go together: set both (TLS) or neither (plain HTTP)")
	}
	for _, k := range []struct{ key, v string }{{"server.tls_cert", s.TLSCert}, {"server.tls_key", s.TLSKey}} {
		if k.v != "" && !filepath.IsAbs(k.v) && (filepath.Base(k.v) != k.v || k.v == "." || k.v == "..") {
			return keyError(k.key, "%q must be an absolute path or the name of a systemd credential (LoadCredential=NAME:PATH)", k.v)
		}
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
		{"server.write_stall_timeout", s.WriteStallTimeout},
		{"local.connect_timeout", c.Local.ConnectTimeout},
	} {
		if d.v.Duration <= 0 {
			return keyError(d.key, "must be a positive duration such as \"10s\"")
		}
	}
	if s.DrainWindow.Duration < 0 || s.DrainWindow.Duration > s.ShutdownTimeout.Duration {
		return keyError("server.drain_window", "%s must be between 0 and server.shutdown_timeout (%s)", s.DrainWindow.Duration, s.ShutdownTimeout.Duration)
	}
	if s.MaxUploadsPerUser < 1 {
		return keyError("server.max_uploads_per_user", "%d must be at least 1", s.MaxUploadsPerUser)
	}
	if s.MaxStreamsPerUser < 1 {
		return keyError("server.max_streams_per_user", "%d must be at least 1", s.MaxStreamsPerUser)
	}
	if s.MaxRequestsPerUser < s.MaxStreamsPerUser {
		return keyError("server.max_requests_per_user", "%d is below server.max_streams_per_user (%d): every stream is a request too", s.MaxRequestsPerUser, s.MaxStreamsPerUser)
	}
	switch c.Backend.Mode {
	case ModeLocal, ModeContainer, ModeAuto, ModeSlurm:
	default:
		return keyError("backend.mode", "%q is not one of \"local\", \"container\", \"auto\", \"slurm\"", c.Backend.Mode)
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
	if c.Backend.Mode == ModeSlurm {
		return c.Slurm.validate()
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
