// Package session runs one agent's sessions: the user's processes (in a
// process group of their own, or a session with a pseudo-terminal), their
// output files and records, and their hand-over to the next agent image on
// reload.
//
// # Upgrading without ending sessions
//
// `systemctl reload` makes the agent exec the binary now installed at its
// path in place: the pid stays, so systemd sees no restart and the
// sessions remain the agent's children (as nginx and HAProxy upgrade, but
// without a second master, because the sessions must stay children of the
// main pid to be reaped). Freeze pauses the sessions at a byte boundary:
// the output copiers stop after saving what they read, the unread output
// stays in the kernel's pipe or pty buffer, and the descriptors (output,
// input, listening socket, state-dir lock) cross exec with the records in
// a small JSON state. The new image Adopts them and reads on from the same
// offset: no byte is lost or repeated.
//
// The alternative is a small holder process per session (like conmon) that
// owns the process, its pty and its output, and that a new agent re-adopts.
// The trade-off:
//
//   - Crash survival: holders keep sessions across an agent crash; the
//     re-exec does not (an agent that dies takes its sessions with it, as
//     before). The re-exec survives every failure it can see before the
//     exec (the new binary is run first and must print the same hand-over
//     format and protocol) and, after it, every failure the new image
//     reports while adopting (it execs the old binary, kept open as a
//     descriptor, back with the same state); a new binary that crashes hard
//     (a fault, not an error) between exec and serving loses the sessions.
//   - Complexity: holders are a second program, a protocol between it and the
//     agent, re-adoption and orphan clean-up; and under systemd they still
//     live in the agent's cgroup, so the agent's main process must stay for
//     them to stay. The re-exec is this file's Freeze, Thaw and Adopt plus
//     passing descriptors across exec.
//   - What each leaves behind: holders leave one extra process per session
//     (memory, a socket each) for the session's life; the re-exec leaves
//     nothing. Both keep the sessions in the agent's cgroup, so `systemctl
//     stop` and `restart` still end them.
//
// What the re-exec does not carry: calls in progress (the agent lets them
// finish first, and refuses later ones with code reloading, not run) and
// open connections (closed once no call has come for a moment; clients
// reconnect, and their new connections wait in the listening socket's
// queue for the new image).
package session
