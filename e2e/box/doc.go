// Package box boots a throwaway Linux machine with a real systemd as PID 1
// inside new namespaces, for end-to-end tests that need systemd.
//
// A box is an overlay of the host's root (writes land on a tmpfs and vanish
// with the box), its own PID, mount, network and cgroup namespaces, and its
// own cgroup subtree. Only a shared directory (Box.Share, /octo-share
// inside) connects it to the host. It needs root, unshare(1), nsenter(1),
// a cgroup2 hierarchy and systemd.
//
// The cgroups take one of two layouts, chosen by the host's:
//
//   - cgroup2 (the host's cgroup2 root offers the memory and pids
//     controllers, or no cgroup v1 hierarchy does): the box's first process
//     starts in a new directory of the host's cgroup2 tree, and the box
//     mounts cgroup2 at /sys/fs/cgroup. Its systemd runs unified.
//   - hybrid (the host binds memory and pids to cgroup v1 hierarchies, so
//     its cgroup2 tree cannot limit a unit): the box's first process also
//     joins a new directory in every v1 hierarchy the host mounts (memory,
//     pids, cpu, cpuacct, name=systemd, ...), below its own cgroup there,
//     before unshare --cgroup makes all of them the roots of its cgroup
//     namespace. Inside, a read-only tmpfs at /sys/fs/cgroup holds cgroup2
//     at unified and each v1 hierarchy at its controllers' name, as systemd
//     lays it out on such a host; systemd 252 sees that layout as hybrid
//     and enforces MemoryMax= (memory.limit_in_bytes), TasksMax= (pids.max)
//     and CPUWeight= (cpu.shares) in v1. MemoryHigh=, MemorySwapMax= and
//     OOMPolicy= (which reads cgroup2's memory.events) have no effect there.
//
// Box.Hybrid says which; Box.Cgroup2 is where the cgroup2 tree is mounted
// inside. Close kills whatever still runs in the box's cgroups (cgroup.kill
// in cgroup2, which every box process is in; v1 has none, so its
// cgroup.procs are swept too) and removes its directories in every
// hierarchy, deepest first.
package box
