package container

import (
	"context"
	"errors"
	"time"

	"octo/internal/backend"
	"octo/internal/dockerapi"
)

// watchOpts connect a watcher to the Ensure that started its container.
type watchOpts struct {
	exited  chan<- int      // receives the exit status
	release <-chan struct{} // closed when Ensure no longer needs the container (logs read)
}

// watch removes container id when it exits, which it does when its agent
// idles out or dies, so that the next Ensure starts a fresh one.
func (r *Runtime) watch(st *userState, c *dockerapi.Client, u backend.User, id string, o *watchOpts) {
	r.mu.Lock()
	if st.watched == id {
		r.mu.Unlock()
		return
	}
	st.watched = id
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		code, err := c.ContainerWait(r.ctx, id)
		r.mu.Lock()
		if st.watched == id {
			st.watched = ""
		}
		r.mu.Unlock()
		if r.ctx.Err() != nil {
			return // Close: leave the container to a later runtime
		}
		if err != nil {
			// Gone already, or the engine failed us: the container may still
			// run, and the next Ensure adopts or replaces it.
			if !r.gone(c, id) {
				r.log.Warn("wait for agent container", "user", u.Name, "container", shortID(id), "err", err)
			}
			if o != nil {
				o.exited <- -1
			}
			return
		}
		if o != nil {
			o.exited <- code
			select {
			case <-o.release:
			case <-r.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		if err := remove(ctx, c, id); err != nil {
			r.log.Warn("remove exited agent container", "user", u.Name, "container", shortID(id), "err", err)
			return
		}
		r.log.Info("agent container exited and was removed", "user", u.Name, "container", shortID(id), "status", code)
	}()
}

// gone reports whether container id no longer exists (someone removed it;
// Podman then fails a wait with a message rather than a 404).
func (r *Runtime) gone(c *dockerapi.Client, id string) bool {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	_, err := c.ContainerInspect(ctx, id)
	return errors.Is(err, dockerapi.ErrNotFound)
}
