package box

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestParseLayout reads the cgroup setups of a pure cgroup2 host, a hybrid
// one like the CI machine (every controller apart) and a Debian-style
// hybrid one (cpu,cpuacct together), and decides the box's layout.
func TestParseLayout(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, cgroup string
		v2ctrl                  []string
		wantRoot                string
		wantV1                  []hierarchy
		wantHybrid              bool
	}{
		{
			name:      "pure cgroup2",
			mountinfo: "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
			cgroup:    "0::/user.slice/user-1000.slice/session-2.scope\n",
			v2ctrl:    []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"},
			wantRoot:  "/sys/fs/cgroup",
		},
		{
			name: "hybrid, every controller apart",
			mountinfo: `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`,
			cgroup: "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/6aa7\n2:cpuacct:/\n1:cpu:/\n0::/\n",
			v2ctrl: []string{"hugetlb"},
			wantV1: []hierarchy{
				{"name=systemd", "/sys/fs/cgroup/systemd", "/"},
				{"pids", "/sys/fs/cgroup/pids", "/"},
				{"memory", "/sys/fs/cgroup/memory", "/process_api/6aa7"},
				{"cpuacct", "/sys/fs/cgroup/cpuacct", "/"},
				{"cpu", "/sys/fs/cgroup/cpu", "/"},
			},
			wantRoot:   "/sys/fs/cgroup/unified",
			wantHybrid: true,
		},
		{
			name: "hybrid, cpu,cpuacct together; a bind mount of a subtree is no root",
			mountinfo: `25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
90 80 0:28 /system.slice /mnt/memory\040bound rw,relatime - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
`,
			cgroup: "12:pids:/user.slice\n4:memory:/user.slice\n3:cpu,cpuacct:/user.slice\n2:blkio:/user.slice\n1:name=systemd:/user.slice/x.scope\n0::/user.slice/x.scope\n",
			v2ctrl: nil,
			wantV1: []hierarchy{
				{"pids", "/sys/fs/cgroup/pids", "/user.slice"},
				{"memory", "/sys/fs/cgroup/memory", "/user.slice"},
				{"cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct", "/user.slice"},
				// blkio: not mounted, not the box's
				{"name=systemd", "/sys/fs/cgroup/systemd", "/user.slice/x.scope"},
			},
			wantRoot:   "/sys/fs/cgroup/unified",
			wantHybrid: true,
		},
		{
			name: "hybrid without pids in v1: cgroup2 alone",
			mountinfo: `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`,
			cgroup:   "4:memory:/\n0::/\n",
			wantV1:   []hierarchy{{"memory", "/sys/fs/cgroup/memory", "/"}},
			wantRoot: "/sys/fs/cgroup/unified",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := parseLayout(tc.mountinfo, tc.cgroup)
			if err != nil {
				t.Fatal(err)
			}
			l.v2ctrl = tc.v2ctrl
			if got := l.v2root; got != tc.wantRoot {
				t.Errorf("cgroup2 root = %q, want %q", got, tc.wantRoot)
			}
			if got := l.v1; !reflect.DeepEqual(got, tc.wantV1) {
				t.Errorf("v1 hierarchies = %+v, want %+v", got, tc.wantV1)
			}
			if got := l.hybrid(); got != tc.wantHybrid {
				t.Errorf("hybrid = %v, want %v", got, tc.wantHybrid)
			}
		})
	}
	if _, err := parseLayout("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n"); err == nil {
		t.Errorf("parseLayout without a cgroup2 mount succeeded, want an error")
	}
}

// TestBootCgroups checks the box's cgroups from the host: its systemd is in
// the box's own directory of every hierarchy (so the box's cgroup namespace
// has them as roots), and Close removes them all.
func TestBootCgroups(t *testing.T) {
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("box cannot run and CI=true: %v", err)
		}
		t.Skipf("skipping box test: %v", err)
	}
	l, err := readLayout()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := Boot(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := filepath.Base(b.cgroup)
	t.Logf("hybrid %v; cgroup2 inside at %s", b.Hybrid(), b.Cgroup2())
	if got, want := b.Hybrid(), l.hybrid(); got != want {
		t.Errorf("box hybrid = %v, want %v (the host's layout)", got, want)
	}
	host, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", b.PID()))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(host)), "\n")
	if !b.Hybrid() {
		lines = lines[len(lines)-1:] // only the cgroup2 line counts
	}
	for _, line := range lines {
		if !strings.HasSuffix(line, "/"+name) && !strings.Contains(line, "/"+name+"/") {
			t.Errorf("the box's systemd, seen from the host, is in %q, want in or below %s", line, name)
		}
	}
	// Inside, each hierarchy's root is the box's: systemd is at the root or
	// in /init.scope (in the hierarchies it manages).
	inside, err := b.Run(ctx, "cat", "/proc/1/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(inside), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) != 3 || f[2] != "/" && f[2] != "/init.scope" {
			t.Errorf("in the box, PID 1 is in %q, want / or /init.scope", line)
		}
	}
	if _, err := b.Run(ctx, "test", "-f", b.Cgroup2()+"/init.scope/cgroup.procs"); err != nil {
		t.Errorf("no cgroup2 tree at %s in the box: %v", b.Cgroup2(), err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range append([]string{b.cgroup}, b.v1...) {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("after Close, %s remains (stat: %v)", dir, err)
		}
	}
}
