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
// mounted at /run/octo-agent. The control plane owns that directory, with
// mode 0700 plus a POSIX ACL entry giving the user's uid rwx (so socket_dir
// must be on a file system with ACLs, as tmpfs and ext4 are), so that the
// agent, running as the user, can create its socket there and nobody else
// can enter it, let alone plant or block anything in it. Before each start
// the runtime empties it, and it trusts the socket only when the socket
// file is the user's and the process accepting connections on it runs as
// the user (SO_PEERCRED). socket_dir itself must not be writable by others.
//
// The agent's state (session records and output) lives in the user's
// workspace, at WORKSPACE/.local/state/octo-agent-container (with the
// default workspace {home}, ~/.local/state/octo-agent-container): a
// directory the container mounts anyway, that survives container
// re-creation and reboots, and that only the user can write. Ensure
// refuses to start an agent when the workspace, .local, .local/state or
// the state dir is not a directory of the user's, or is writable by others.
// It is not the local agent's ~/.local/state/octo-agent: a local agent of
// the same user may hold that one's lock, and process ids recorded in a
// container's pid namespace mean nothing outside it.
//
// Ensure serialises per user: it returns at once while the agent answers;
// otherwise it adopts a running labelled container whose agent answers, or
// removes every labelled container and starts a fresh one, waiting for its
// socket. A watcher removes each container when it exits, which it does
// when the agent idles out, so the next request starts a new one.
package container
