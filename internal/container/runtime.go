package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/dockerapi"
)

// DefaultEngineSockets are tried in order when [container] engine_socket is empty.
var DefaultEngineSockets = []string{"/run/podman/podman.sock", "/var/run/docker.sock"}

// Labels on every container the runtime manages.
const (
	LabelManaged = "octo.managed" // "1"
	LabelUser    = "octo.user"    // the user's name
	LabelUID     = "octo.uid"
)

// Paths inside the container.
const (
	agentPath    = "/usr/local/bin/octo-agent" // agent_binary is mounted here, read-only
	sockDirInCtr = "/run/octo-agent"           // the user's socket directory is mounted here
)

// Timeouts of the runtime's own steps; a caller's shorter deadline wins.
const (
	pingTimeout  = 2 * time.Second
	startTimeout = 30 * time.Second
	logTail      = 20
	// removeTimeout bounds waiting for a removal someone else started.
	removeTimeout = 30 * time.Second
)

// Runtime starts, finds and removes users' agent containers. Create it with
// New; it is safe for concurrent use.
type Runtime struct {
	cfg    config.Container
	log    *slog.Logger
	ctlUID uint32 // the control plane's uid, the agent's --allow-user

	ctx    context.Context // ends at Close; watchers run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	engine *dockerapi.Client // nil until an engine answered
	users  map[string]*userState
}

// userState serialises Ensure for one user and remembers the container a
// watcher removes when it exits.
type userState struct {
	sem     chan struct{}
	watched string // ID of the container being watched, "" if none
}

// New returns a runtime for cfg. It checks cfg but does not contact the
// engine, which may start later.
func New(cfg config.Container, log *slog.Logger) (*Runtime, error) {
	if cfg.Image == "" {
		return nil, errors.New("[container] image is empty: name the image agents run in")
	}
	if !strings.HasPrefix(cfg.AgentBinary, "/") {
		return nil, fmt.Errorf("[container] agent_binary %q must be an absolute path to a static octo-agent", cfg.AgentBinary)
	}
	if !strings.HasPrefix(cfg.SocketDir, "/") {
		return nil, fmt.Errorf("[container] socket_dir %q must be an absolute path", cfg.SocketDir)
	}
	if strings.ContainsAny(cfg.AgentBinary+cfg.SocketDir, ":,") {
		return nil, fmt.Errorf("[container] agent_binary and socket_dir cannot contain ':' or ',' (they are mounted into containers)")
	}
	if cfg.Workspace == "" {
		cfg.Workspace = "{home}"
	}
	if cfg.Network == "" {
		cfg.Network = "none"
	}
	if cfg.Memory < 0 || cfg.CPUs < 0 || cfg.PIDs < 0 {
		return nil, errors.New("[container] memory, cpus and pids must not be negative (0 = no limit)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{cfg: cfg, log: log, ctlUID: uint32(os.Getuid()), ctx: ctx, cancel: cancel,
		users: map[string]*userState{}}, nil
}

// Close stops watching containers. Running agents keep running; a later
// runtime finds them by label.
func (r *Runtime) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	if r.engine != nil {
		r.engine.Close()
	}
	r.mu.Unlock()
	return nil
}

// Ping reports whether the engine answers; its error names the socket(s) tried.
func (r *Runtime) Ping(ctx context.Context) error {
	_, err := r.client(ctx)
	return err
}

// client returns the engine client, finding the engine on first use.
func (r *Runtime) client(ctx context.Context) (*dockerapi.Client, error) {
	r.mu.Lock()
	c := r.engine
	r.mu.Unlock()
	if c != nil {
		if err := ping(ctx, c); err != nil {
			return nil, engineDown([]string{c.Socket()}, err)
		}
		return c, nil
	}
	socks := DefaultEngineSockets
	if r.cfg.EngineSocket != "" {
		socks = []string{r.cfg.EngineSocket}
	}
	var errs []error
	for _, s := range socks {
		c := dockerapi.New(s)
		if err := ping(ctx, c); err != nil {
			c.Close()
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		if r.engine == nil {
			r.engine = c
			r.log.Info("container engine found", "socket", s)
		}
		c = r.engine
		r.mu.Unlock()
		return c, nil
	}
	return nil, engineDown(socks, errors.Join(errs...))
}

func ping(ctx context.Context, c *dockerapi.Client) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return c.Ping(ctx)
}

func engineDown(socks []string, err error) *backend.Error {
	return &backend.Error{Code: backend.CodeUnavailable,
		Message: fmt.Sprintf("container engine at %s does not answer: start it (podman system service, or dockerd) or set [container] engine_socket",
			strings.Join(socks, " or ")),
		Err: err}
}

func unavailable(err error, format string, args ...any) *backend.Error {
	return &backend.Error{Code: backend.CodeUnavailable,
		Message: fmt.Sprintf(format, args...), Err: err}
}

func failed(err error, format string, args ...any) *backend.Error {
	return &backend.Error{Code: backend.CodeFailed,
		Message: fmt.Sprintf(format, args...), Err: err}
}

func timedOut(err error, format string, args ...any) *backend.Error {
	return &backend.Error{Code: backend.CodeTimeout,
		Message: fmt.Sprintf(format, args...), Err: err}
}

// user returns the state of the user named name, creating it.
func (r *Runtime) user(name string) *userState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.users[name]
	if s == nil {
		s = &userState{sem: make(chan struct{}, 1)}
		r.users[name] = s
	}
	return s
}
