package main

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"octo/internal/config"
	"octo/internal/container"
	"octo/internal/dockerapi"
)

// checkContainer checks what the container backend needs: an engine that
// answers, the image, ACLs on the socket dir, the agent binary it mounts.
func (d *doctor) checkContainer(ctx context.Context) {
	if d.cfg.Backend.Mode == config.ModeLocal {
		return
	}
	cc := d.cfg.Container
	socks := container.DefaultEngineSockets
	if cc.EngineSocket != "" {
		socks = []string{cc.EngineSocket}
	}
	var engine *dockerapi.Client
	var errs []error
	for _, s := range socks {
		c := dockerapi.New(s)
		if err := c.Ping(ctx); err != nil {
			c.Close()
			errs = append(errs, err)
			continue
		}
		engine = c
		break
	}
	if engine == nil {
		d.fail("engine", "start the engine (systemctl enable --now podman.socket) or set [container] engine_socket", "no engine answers: %v", errors.Join(errs...))
	} else {
		defer engine.Close()
		d.ok("engine", "answers on %s", engine.Socket())
		if _, err := engine.ImageInspect(ctx, cc.Image); err != nil {
			d.fail("image", "podman pull "+cc.Image+" (or set [container] image)", "%s: %v", cc.Image, err)
		} else {
			d.ok("image", "%s is present", cc.Image)
		}
	}
	d.checkACL(cc.SocketDir)
	if _, err := statFile(cc.AgentBinary); err != nil {
		d.fail("container agent", "install octo-agent at "+cc.AgentBinary+" or set [container] agent_binary", "%v", err)
	}
}

// checkACL checks that socket_dir's file system keeps POSIX ACLs, which
// the container backend uses to let the control plane reach each socket.
func (d *doctor) checkACL(dir string) {
	_, err := unix.Getxattr(dir, "system.posix_acl_access", nil)
	switch {
	case err == nil, errors.Is(err, unix.ENODATA):
		d.ok("socket_dir", "%s supports ACLs", dir)
	case errors.Is(err, unix.ENOTSUP):
		d.fail("socket_dir", "put [container] socket_dir on a file system with POSIX ACLs (tmpfs under /run has them)", "%s: no POSIX ACLs", dir)
	default:
		d.warn("socket_dir", "systemd-tmpfiles --create /etc/tmpfiles.d/octo.conf", "%s: %v", dir, err)
	}
}
