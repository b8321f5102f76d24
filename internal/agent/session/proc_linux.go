package session

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// procInfo is what the agent reads from /proc/PID/stat.
type procInfo struct {
	ppid, pgid int
	start      uint64 // start time in clock ticks since boot
	zombie     bool
}

// procStart returns the start time of process pid, in clock ticks since
// boot, to tell it from a later process that reused the pid.
func procStart(pid int) (uint64, error) {
	var buf [1024]byte
	p, ok := readProcStat("/proc/"+strconv.Itoa(pid)+"/stat", buf[:])
	if !ok {
		return 0, os.ErrNotExist
	}
	return p.start, nil
}

// scanProcs reads /proc/PID/stat of the processes that can belong to a
// session of this agent's user. It runs as each session ends, so it reads
// with one buffer and raw system calls, and it skips other users'
// processes by the owner of /proc/PID (one stat, not a formatted stat
// file each): the cost grows with this user's processes, not the
// machine's. Root-owned entries are read too: a process that made itself
// non-dumpable (ssh-agent, gpg-agent) or runs a set-user-ID program shows
// as root.
func scanProcs() map[int]procInfo {
	out := map[int]procInfo{}
	d, err := os.Open("/proc")
	if err != nil {
		return out
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	dirfd := int(d.Fd())
	me := uint32(os.Getuid())
	var buf [1024]byte
	path := make([]byte, 0, 32)
	for _, n := range names {
		if n[0] < '1' || n[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(dirfd, n, &st, 0) != nil || (st.Uid != me && st.Uid != 0) {
			continue
		}
		path = append(append(append(path[:0], "/proc/"...), n...), "/stat"...)
		if p, ok := readProcStat(string(path), buf[:]); ok {
			out[pid] = p
		}
	}
	return out
}

// readProcStat reads one /proc/PID/stat into buf and parses it.
func readProcStat(path string, buf []byte) (procInfo, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procInfo{}, false
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil || n <= 0 {
		return procInfo{}, false
	}
	return parseProcStat(buf[:n])
}

// parseProcStat parses the fields of /proc/PID/stat the agent needs.
func parseProcStat(b []byte) (procInfo, bool) {
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	// Fields after the command: state ppid pgrp ... starttime (the 20th).
	var p procInfo
	field := 0
	for _, f := range bytes.Fields(b[i+1:]) {
		switch field {
		case 0:
			p.zombie = len(f) == 1 && f[0] == 'Z'
		case 1:
			p.ppid, _ = strconv.Atoi(string(f))
		case 2:
			p.pgid, _ = strconv.Atoi(string(f))
		case 19:
			p.start, _ = strconv.ParseUint(string(f), 10, 64)
			return p, true
		}
		field++
	}
	return procInfo{}, false
}
