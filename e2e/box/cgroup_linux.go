package box

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is a cgroup v1 hierarchy the host mounts.
type hierarchy struct {
	opts  string // its controllers as /proc/self/cgroup names them: "memory", "cpu,cpuacct", "name=systemd"
	mount string // where the host mounts its root
	path  string // this process's cgroup in it
}

// layout is the host's cgroup setup, as this process sees it.
type layout struct {
	v2root string   // where the cgroup2 hierarchy is mounted
	v2ctrl []string // the controllers its root offers
	v1     []hierarchy
}

// limitControllers are the controllers systemd needs to enforce the unit
// limits (MemoryMax=, TasksMax=); a hybrid box needs them in cgroup v1.
var limitControllers = []string{"memory", "pids"}

// hybrid reports whether a box here needs the hybrid layout: the cgroup2
// tree lacks the controllers the unit limits need, and v1 hierarchies hold
// them.
func (l *layout) hybrid() bool {
	v2, v1 := true, true
	for _, c := range limitControllers {
		v2 = v2 && slices.Contains(l.v2ctrl, c)
		v1 = v1 && slices.ContainsFunc(l.v1, func(h hierarchy) bool { return slices.Contains(strings.Split(h.opts, ","), c) })
	}
	return !v2 && v1
}

// readLayout finds the host's cgroup2 root and its v1 hierarchies in
// /proc/self/mountinfo and /proc/self/cgroup.
func readLayout() (*layout, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	l, err := parseLayout(string(mi), string(cg))
	if err != nil {
		return nil, err
	}
	ctrl, err := os.ReadFile(filepath.Join(l.v2root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup2 controllers: %w", err)
	}
	l.v2ctrl = strings.Fields(string(ctrl))
	return l, nil
}

// parseLayout reads the cgroup mounts of mountinfo and this process's
// cgroups (/proc/self/cgroup). Only mounts of a hierarchy's root count:
// the box's directories are made below the process's own cgroups.
func parseLayout(mountinfo, cgroup string) (*layout, error) {
	l := &layout{}
	type mount struct {
		point string
		opts  []string
	}
	var v1 []mount
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, super := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(super) < 3 || fields[3] != "/" {
			continue
		}
		switch super[0] {
		case "cgroup2":
			if l.v2root == "" {
				l.v2root = unescape(fields[4])
			}
		case "cgroup":
			v1 = append(v1, mount{unescape(fields[4]), strings.Split(super[2], ",")})
		}
	}
	if l.v2root == "" {
		return nil, errors.New("needs a cgroup2 hierarchy (none mounted)")
	}
	sc = bufio.NewScanner(strings.NewReader(cgroup))
	for sc.Scan() {
		// ID:CONTROLLERS:PATH; the cgroup2 line has no controllers.
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 || f[1] == "" {
			continue
		}
		for _, m := range v1 {
			if !containsAll(m.opts, strings.Split(f[1], ",")) {
				continue
			}
			l.v1 = append(l.v1, hierarchy{opts: f[1], mount: m.point, path: f[2]})
			break
		}
	}
	return l, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// makeV1 creates the box's directory name in every v1 hierarchy of l and
// returns them, host paths in l.v1's order. The box's first process joins
// them before unshare --cgroup, which makes them the roots of its cgroup
// namespace: the box's systemd then manages its own subtree in each, as
// it manages the box's cgroup2 directory, and the host's stays untouched.
func makeV1(l *layout, name string) ([]string, error) {
	var dirs []string
	for _, h := range l.v1 {
		dir := filepath.Join(h.mount, h.path, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			removeCgroups(dirs)
			return nil, fmt.Errorf("create box cgroup in %s: %w", h.opts, err)
		}
		dirs = append(dirs, dir)
		// A new v1 cpuset has no CPUs and no memory nodes, and a process
		// cannot join it: give it its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
				removeCgroups(dirs)
				return nil, fmt.Errorf("set up box cpuset: %w", err)
			}
		}
	}
	return dirs, nil
}

// killCgroups kills every process in the cgroup trees dirs. The box's
// processes are all in its cgroup2 tree, where cgroup.kill ends them at
// once; cgroup v1 has no cgroup.kill, so its trees are swept by
// cgroup.procs too, in case.
func killCgroups(v2 string, v1 []string) {
	os.WriteFile(filepath.Join(v2, "cgroup.kill"), []byte("1"), 0)
	for _, dir := range v1 {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, _ := strconv.Atoi(f); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes each cgroup directory of dirs and everything below
// it, deepest first, retrying while the last processes exit.
func removeCgroups(dirs []string) error {
	var err error
	for try := 0; try < 50; try++ {
		var all []string
		for _, dir := range dirs {
			filepath.WalkDir(dir, func(p string, d os.DirEntry, e error) error {
				if e == nil && d.IsDir() {
					all = append(all, p)
				}
				return nil
			})
		}
		err = nil
		// Walk order puts parents before their children: remove backwards.
		for i := len(all) - 1; i >= 0; i-- {
			if e := os.Remove(all[i]); e != nil && !errors.Is(e, os.ErrNotExist) {
				err = e
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove box cgroup: %w", err)
}
