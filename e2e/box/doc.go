// Package box boots a throwaway Linux machine with a real systemd as PID 1
// inside new namespaces, for end-to-end tests that need systemd.
//
// A box is an overlay of the host's root (writes land on a tmpfs and vanish
// with the box), its own PID, mount, network and cgroup namespaces, and its
// own cgroup2 subtree. Only a shared directory (Box.Share, /octo-share
// inside) connects it to the host. It needs root, unshare(1), nsenter(1),
// a cgroup2 hierarchy and systemd.
package box
