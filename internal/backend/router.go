package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"octo/internal/config"
)

// RouterConfig says where agents are.
type RouterConfig struct {
	Mode      string       // config.ModeLocal, ModeContainer or ModeAuto
	Local     config.Local // socket_dir, user_socket
	Container string       // [container] socket_dir
	Runtime   ContainerRuntime
	Slurm     SlurmPlacer // mode slurm
	// DevSocket, when set, is the socket of `octo dev`'s in-process agent,
	// which serves DevUID only. Mode is then ignored.
	DevSocket string
	DevUID    uint32
}

// Router maps users to their agents' endpoints.
type Router struct{ cfg RouterConfig }

// NewRouter returns a router. Modes container and auto need a Runtime.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.DevSocket == "" && cfg.Mode == config.ModeSlurm && cfg.Slurm == nil {
		return nil, fmt.Errorf("backend.mode %q: no Slurm placer", cfg.Mode)
	}
	if cfg.DevSocket == "" && cfg.Mode != config.ModeLocal && cfg.Mode != config.ModeSlurm && cfg.Runtime == nil {
		return nil, fmt.Errorf("backend.mode %q needs a container runtime", cfg.Mode)
	}
	return &Router{cfg: cfg}, nil
}

// Mode reports the configured mode ("dev" in dev mode).
func (r *Router) Mode() string {
	if r.cfg.DevSocket != "" {
		return string(PlacementDev)
	}
	return r.cfg.Mode
}

// SocketPath is the one place that builds an agent socket path: where u's
// agent listens when it runs at placement p.
func (r *Router) SocketPath(p Placement, u User) string {
	switch p {
	case PlacementSystem:
		return filepath.Join(r.cfg.Local.SocketDir, "agent-"+u.Name+".sock")
	case PlacementUser:
		if r.cfg.Local.UserSocket == "" {
			return ""
		}
		return strings.ReplaceAll(r.cfg.Local.UserSocket, "{uid}", strconv.FormatUint(uint64(u.UID), 10))
	case PlacementContainer:
		return filepath.Join(r.cfg.Container, u.Name, "agent.sock")
	case PlacementDev:
		return r.cfg.DevSocket
	}
	return ""
}

// Endpoint finds where u's agent is, starting its container if the
// container backend serves u. Failures are *Error values.
func (r *Router) Endpoint(ctx context.Context, u User) (Endpoint, error) {
	if u.Name == "" || u.Name == "." || u.Name == ".." || strings.ContainsAny(u.Name, "/\x00") {
		return Endpoint{}, &Error{Code: CodeUnavailable,
			Message: fmt.Sprintf("user name %q cannot name an agent socket", u.Name)}
	}
	if r.cfg.DevSocket != "" {
		if u.UID != r.cfg.DevUID {
			return Endpoint{}, unavailable(fmt.Sprintf("octo dev serves only uid %d, not %s", r.cfg.DevUID, u.Name), nil)
		}
		return Endpoint{Placement: PlacementDev, Socket: r.cfg.DevSocket}, nil
	}
	switch r.cfg.Mode {
	case config.ModeContainer:
		return r.container(ctx, u)
	case config.ModeSlurm:
		return r.slurm(ctx, u)
	case config.ModeAuto:
		ep, lerr := r.local(u)
		if lerr == nil {
			return ep, nil
		}
		if perr := r.cfg.Runtime.Ping(ctx); perr != nil {
			return Endpoint{}, unavailable(fmt.Sprintf("no agent for %s: %s; and the container engine does not answer", u.Name, lerr.(*Error).Message), perr)
		}
		return r.container(ctx, u)
	default:
		return r.local(u)
	}
}

func (r *Router) local(u User) (Endpoint, error) {
	sys := r.SocketPath(PlacementSystem, u)
	serr := socketExists(sys)
	if serr == nil {
		return Endpoint{Placement: PlacementSystem, Socket: sys}, nil
	}
	fix := fmt.Sprintf("no agent socket for %s at %s (run: systemctl enable --now octo-agent@%s.socket", u.Name, sys, u.Name)
	if us := r.SocketPath(PlacementUser, u); us != "" {
		uerr := socketExists(us)
		if uerr == nil {
			return Endpoint{Placement: PlacementUser, Socket: us}, nil
		}
		fix += fmt.Sprintf("; or, as %s: systemctl --user enable --now octo-user.socket, for %s", u.Name, us)
		if !errors.Is(uerr, fs.ErrNotExist) {
			fix += fmt.Sprintf(" [%v]", uerr)
		}
	}
	if !errors.Is(serr, fs.ErrNotExist) {
		return Endpoint{}, unavailable(fix+")", serr)
	}
	return Endpoint{}, unavailable(fix+")", nil)
}

func (r *Router) container(ctx context.Context, u User) (Endpoint, error) {
	sock := r.SocketPath(PlacementContainer, u)
	if err := r.cfg.Runtime.Ensure(ctx, u, sock); err != nil {
		var be *Error
		if errors.As(err, &be) {
			return Endpoint{}, err
		}
		return Endpoint{}, &Error{Code: CodeFailed,
			Message: "start agent container for " + u.Name, Err: err}
	}
	return Endpoint{Placement: PlacementContainer, Socket: sock}, nil
}

func socketExists(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s is not a socket", path)
	}
	return nil
}

func unavailable(msg string, err error) *Error {
	return &Error{Code: CodeUnavailable, Message: msg, Err: err}
}
