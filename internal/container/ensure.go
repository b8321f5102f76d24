package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"octo/internal/backend"
	"octo/internal/dockerapi"
)

// Ensure returns once u's agent listens on sock, which is
// socket_dir/USER/NAME: at once when it already answers, else after
// replacing whatever containers are labelled for u with a fresh one.
// Concurrent calls for one user start one container. Its errors are
// *backend.Error values.
func (r *Runtime) Ensure(ctx context.Context, u backend.User, sock string) error {
	if u.UID == 0 {
		return unavailable(nil, "refusing to run an agent container for %s as root", u.Name)
	}
	if u.Name == "" || u.Home == "" || !filepath.IsAbs(sock) {
		return unavailable(nil, "cannot start an agent container for %q (home %q, socket %q): need a name, a home and an absolute socket path", u.Name, u.Home, sock)
	}
	st := r.user(u.Name)
	if r.watching(st) && ready(ctx, sock, u.UID) == nil {
		return nil
	}
	select {
	case st.sem <- struct{}{}:
		defer func() { <-st.sem }()
	case <-ctx.Done():
		return ctxErr(ctx, u)
	}
	if r.watching(st) && ready(ctx, sock, u.UID) == nil {
		return nil // started by the call we waited for
	}
	c, err := r.client(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx, u)
		}
		return err
	}
	reused, err := r.adoptOrClear(ctx, c, st, u, sock)
	if err != nil || reused {
		return err
	}
	return r.start(ctx, c, st, u, sock)
}

func (r *Runtime) watching(st *userState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return st.watched != ""
}

func ctxErr(ctx context.Context, u backend.User) error {
	return timedOut(ctx.Err(), "agent container for %s did not start in time", u.Name)
}

// adoptOrClear looks for containers labelled for u. The one named for u,
// if it runs and its agent answers, is kept (and watched); every other one
// is removed.
func (r *Runtime) adoptOrClear(ctx context.Context, c *dockerapi.Client, st *userState, u backend.User, sock string) (bool, error) {
	list, err := c.ContainerList(ctx, LabelManaged+"=1", LabelUser+"="+u.Name)
	if err != nil {
		return false, r.engineErr(ctx, c, u, err, "list containers")
	}
	var keep *dockerapi.Container
	for i, ct := range list {
		if keep == nil && ct.State == "running" && slices.ContainsFunc(ct.Names, func(n string) bool {
			return strings.TrimPrefix(n, "/") == containerName(u)
		}) {
			keep = &list[i]
			continue
		}
		if err := r.removeOld(ctx, c, u, ct.ID, ct.State); err != nil {
			return false, err
		}
	}
	if keep == nil {
		return false, nil
	}
	// Checked once the others are gone: one of them might have been serving.
	if ready(ctx, sock, u.UID) != nil {
		return false, r.removeOld(ctx, c, u, keep.ID, "not answering")
	}
	r.watch(st, c, u, keep.ID, nil)
	r.log.Info("agent container adopted", "user", u.Name, "container", shortID(keep.ID))
	return true, nil
}

func (r *Runtime) removeOld(ctx context.Context, c *dockerapi.Client, u backend.User, id, state string) error {
	if err := remove(ctx, c, id); err != nil {
		return r.engineErr(ctx, c, u, err, "remove old container "+shortID(id))
	}
	r.log.Info("old agent container removed", "user", u.Name, "container", shortID(id), "state", state)
	return nil
}

// remove force-removes a container and returns once it is gone, also when
// someone else (a watcher) is removing it: until then its name stays taken.
func remove(ctx context.Context, c *dockerapi.Client, id string) error {
	err := c.ContainerRemove(ctx, id, true)
	switch {
	case err == nil || errors.Is(err, dockerapi.ErrNotFound):
		return nil
	case !errors.Is(err, dockerapi.ErrConflict): // 409: removal already in progress
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if _, err := c.ContainerInspect(ctx, id); errors.Is(err, dockerapi.ErrNotFound) {
			return nil
		} else if err != nil && !errors.Is(err, dockerapi.ErrConflict) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// start creates and starts a container for u and waits for its agent.
func (r *Runtime) start(ctx context.Context, c *dockerapi.Client, st *userState, u backend.User, sock string) error {
	ws, err := workspace(r.cfg.Workspace, u)
	if err != nil {
		return unavailable(nil, "%s", err.Error())
	}
	if err := r.checkHost(ws, u); err != nil {
		return err
	}
	dir := filepath.Dir(sock)
	if err := prepareSockDir(dir, filepath.Base(sock), u.UID); err != nil {
		return unavailable(err, "prepare agent socket directory %s", dir)
	}
	cfg := spec(r.cfg, u, ws, dir, filepath.Base(sock), r.ctlUID)
	id, err := r.create(ctx, c, u, cfg)
	if err != nil {
		return err
	}
	if err := c.ContainerStart(ctx, id); err != nil {
		err = r.engineErr(ctx, c, u, err, "start container")
		r.discard(c, id)
		return err
	}
	exited := make(chan int, 1)
	release := make(chan struct{})
	r.watch(st, c, u, id, &watchOpts{exited: exited, release: release})
	defer close(release)
	if err := r.waitReady(ctx, c, u, id, sock, exited); err != nil {
		r.discard(c, id)
		return err
	}
	r.log.Info("agent container started", "user", u.Name, "container", shortID(id))
	return nil
}

// discard removes a container that failed to start, even when the
// caller's context has ended.
func (r *Runtime) discard(c *dockerapi.Client, id string) {
	ctx, cancel := context.WithTimeout(r.ctx, removeTimeout)
	defer cancel()
	if err := remove(ctx, c, id); err != nil {
		r.log.Warn("remove failed agent container", "container", shortID(id), "err", err)
	}
}

// checkHost checks what the container mounts from the host. A path the
// control plane may not look into (a private home) is left to the engine.
func (r *Runtime) checkHost(ws string, u backend.User) error {
	fi, err := os.Stat(r.cfg.AgentBinary)
	if err == nil && !fi.Mode().IsRegular() || err != nil && !errors.Is(err, fs.ErrPermission) {
		return unavailable(err, "agent binary %s is missing: install a static octo-agent there (CGO_ENABLED=0 go build ./octo-agent) or set [container] agent_binary", r.cfg.AgentBinary)
	}
	fi, err = os.Stat(ws)
	if err == nil && !fi.IsDir() || err != nil && !errors.Is(err, fs.ErrPermission) {
		return unavailable(err, "workspace %s does not exist: create it, owned by its user, or change [container] workspace", ws)
	}
	if err := checkStateDir(ws, u.UID, u.GID); err != nil {
		return unavailable(err, "refusing to start %s's agent: the path to its state dir %s must be writable by the user alone (chown %d, chmod go-w)",
			u.Name, stateDir(ws), u.UID)
	}
	return nil
}

// create creates u's container, replacing a leftover one of the same name
// that octo manages.
func (r *Runtime) create(ctx context.Context, c *dockerapi.Client, u backend.User, cfg dockerapi.ContainerConfig) (string, error) {
	name := containerName(u)
	for attempt := 0; ; attempt++ {
		id, err := c.ContainerCreate(ctx, name, cfg)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, dockerapi.ErrConflict) || attempt > 0 {
			return "", r.engineErr(ctx, c, u, err, "create container "+name)
		}
		old, ierr := c.ContainerInspect(ctx, name)
		if ierr == nil && old.Config.Labels[LabelManaged] != "1" {
			return "", unavailable(err, "a container named %s exists that octo does not manage: remove or rename it", name)
		}
		if rerr := remove(ctx, c, name); rerr != nil {
			return "", r.engineErr(ctx, c, u, rerr, "remove old container "+name)
		}
	}
}

// engineErr turns a failed engine call into a *backend.Error.
func (r *Runtime) engineErr(ctx context.Context, c *dockerapi.Client, u backend.User, err error, what string) error {
	switch {
	case ctx.Err() != nil:
		return ctxErr(ctx, u)
	case errors.Is(err, dockerapi.ErrUnreachable):
		return engineDown([]string{c.Socket()}, err)
	case errors.Is(err, dockerapi.ErrNotFound) && strings.HasPrefix(what, "create"):
		if _, ierr := c.ImageInspect(ctx, r.cfg.Image); errors.Is(ierr, dockerapi.ErrNotFound) {
			return unavailable(err, "container image %s is not in the engine at %s: pull or build it (for the busybox test image octo-agent-base:latest run .ci/setup-engine.sh as root) or set [container] image",
				r.cfg.Image, c.Socket())
		}
	}
	return failed(err, "%s for %s", what, u.Name)
}

// waitReady waits until the agent answers on sock, the container exits, or
// time runs out.
func (r *Runtime) waitReady(ctx context.Context, c *dockerapi.Client, u backend.User, id, sock string, exited <-chan int) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx, sock, u.UID)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNotReady) {
			return failed(err, "agent container for %s", u.Name)
		}
		select {
		case code := <-exited:
			return failed(nil, "agent container for %s exited with status %d before its agent listened; last log lines:\n%s",
				u.Name, code, r.lastLogs(c, id))
		case <-deadline.C:
			return timedOut(nil, "agent container for %s did not listen on %s within %s; last log lines:\n%s",
				u.Name, sock, startTimeout, r.lastLogs(c, id))
		case <-ctx.Done():
			return ctxErr(ctx, u)
		case <-tick.C:
		}
	}
}

// lastLogs returns the container's last log lines, stdout then stderr.
func (r *Runtime) lastLogs(c *dockerapi.Client, id string) string {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	out, errb, err := c.ContainerLogs(ctx, id, logTail)
	if err != nil {
		return fmt.Sprintf("(logs unavailable: %v)", err)
	}
	s := strings.TrimRight(string(out)+string(errb), "\n")
	if s == "" {
		return "(none)"
	}
	return s
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
