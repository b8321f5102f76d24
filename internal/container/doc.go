// Package container runs each user's octo-agent in a container through the
// Docker Engine API (dockerd or Podman), implementing backend.ContainerRuntime.
//
// One container per user, named octo-agent-USER and labelled octo.managed=1,
// octo.user=USER, runs the host's static octo-agent (mounted read-only) as
// the user's uid:gid, with no capabilities, no new privileges, a read-only
// root with a tmpfs /tmp, the configured memory, cpu and pids limits and
// network (default none). The user's workspace is mounted read-write at the
// same path, so paths and file ownership are the same inside and out.
//
// The agent listens on socket_dir/USER/agent.sock: socket_dir/USER is
// mounted at /run/octo-agent. The control plane owns that directory with mode
// 01733 so the agent, running as the user, can create its socket there;
// before each start the runtime deletes what in it the user does not own,
// and it trusts the socket only when the socket file is the user's and the
// process accepting connections on it runs as the user (SO_PEERCRED). The
// agent's state (session records and output) lives beside the socket, in
// socket_dir/USER/state, created by the agent as the user: it outlives
// container re-creation, whatever the workspace is, but not a reboot when
// socket_dir is on /run.
//
// Ensure serialises per user: it returns at once while the agent answers;
// otherwise it adopts a running labelled container whose agent answers, or
// removes every labelled container and starts a fresh one, waiting for its
// socket. A watcher removes each container when it exits, which it does
// when the agent idles out, so the next request starts a new one.
package container
