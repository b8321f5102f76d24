package session

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		in   string
		want procInfo
		ok   bool
	}{
		{"42 (sleep) S 1 42 42 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 12345 2265088 180", procInfo{ppid: 1, pgid: 42, start: 12345}, true},
		{"7 (a) b) (c) Z 3 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0", procInfo{ppid: 3, pgid: 5, start: 999, zombie: true}, true},
		{"7 (short) S 1 2 3", procInfo{}, false},
		{"no parenthesis", procInfo{}, false},
	}
	for _, tt := range tests {
		got, ok := parseProcStat([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseProcStat(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestProcStartSelf(t *testing.T) {
	st, err := procStart(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("procStart(self) = %d, %v; want a start time", st, err)
	}
	if p := scanProcs()[os.Getpid()]; p.start != st || p.ppid != os.Getppid() {
		t.Errorf("scanProcs()[self] = %+v, want start %d and ppid %d", p, st, os.Getppid())
	}
}

// scanProcs skips processes of other users: none of them can be in a
// session of this agent, and reading their stat files is what made a
// session's end cost grow with the machine's processes.
func TestScanProcsSkipsOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipping: needs root to start a process as another user (uid 65534)")
	}
	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	mine := exec.Command("sleep", "60")
	if err := mine.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { mine.Process.Kill(); mine.Wait() }()
	procs := scanProcs()
	if _, ok := procs[other.Process.Pid]; ok {
		t.Errorf("scanProcs() has pid %d of uid 65534; want only this user's and root's processes", other.Process.Pid)
	}
	if _, ok := procs[mine.Process.Pid]; !ok {
		t.Errorf("scanProcs() lacks pid %d, this user's child", mine.Process.Pid)
	}
}
