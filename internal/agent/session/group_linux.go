package session

import (
	"encoding/binary"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// A session's process group is signalled only while it is provably the
// session's:
//
//   - Until the agent reaps the leader, the leader (running or a zombie)
//     holds its pid, so no other process can have that pid or lead a group
//     with that id: kill(-pgid) is safe. kill and the reap both hold reapMu.
//   - Just before the reap, recordLeftovers records the other members of the
//     group (pid and start time). After the reap the group id is free for
//     reuse once those are gone, so the agent never signals the group again:
//     it signals, one by one through a pidfd, the recorded members and
//     their children in the same group, each checked by start time.
//
// Left out: a leftover's child whose parent died before a scan saw it (it
// is reparented away); it is not provably ours, so it is not chased. An
// agent that restarted knows no leftovers of earlier sessions at all.

// si_code values of SIGCHLD (linux/signal.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// waitLeader blocks until the leader has exited, without reaping it, and
// returns its wait status; ok is false if that failed (the reap then says).
func (ses *Session) waitLeader() (ws syscall.WaitStatus, ok bool) {
	var info unix.Siginfo
	var err error
	for {
		err = unix.Waitid(unix.P_PID, ses.pgid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, false
	}
	// The SIGCHLD fields after signo, errno, code and padding: pid, uid,
	// status (the same layout on every 64-bit Linux).
	raw := (*[unsafe.Sizeof(info)]byte)(unsafe.Pointer(&info))
	status := int32(binary.NativeEndian.Uint32(raw[24:28]))
	switch info.Code {
	case cldExited:
		return syscall.WaitStatus(status&0xff) << 8, true
	case cldKilled:
		return syscall.WaitStatus(status & 0x7f), true
	case cldDumped:
		return syscall.WaitStatus(status&0x7f | 0x80), true
	}
	return 0, false
}

// recordLeftovers records the group's members other than the leader,
// which must have exited and not be reaped yet, and marks the group as
// about to be reaped. It is called before the reap.
func (ses *Session) recordLeftovers() {
	ses.reapMu.Lock()
	defer ses.reapMu.Unlock()
	ses.leftovers = map[int]uint64{}
	for pid, p := range scanProcs() {
		if p.pgid == ses.pgid && pid != ses.pgid && !p.zombie {
			ses.leftovers[pid] = p.start
		}
	}
	ses.reaped = true // from here on, never kill(-pgid)
}

// kill sends sig to the session's process group while its leader is not
// reaped, else to its recorded leftovers.
func (ses *Session) kill(sig syscall.Signal) error {
	if ses.pgid <= 0 {
		return errorf(agentrpc.CodeNotRunning, "session %s has no process", ses.id)
	}
	ses.reapMu.Lock()
	defer ses.reapMu.Unlock()
	var err error
	if !ses.reaped {
		err = unix.Kill(-ses.pgid, sig)
	} else if ses.signalLeftovers(sig) == 0 {
		err = unix.ESRCH
	}
	if err == unix.ESRCH {
		return ses.notRunning()
	}
	if err != nil {
		return errorf(agentrpc.CodeInternal, "signal session %s: %v", ses.id, err)
	}
	return nil
}

// groupAlive reports whether the session has not ended yet (its record
// saved), its leader is not reaped yet, or a recorded leftover still runs.
func (ses *Session) groupAlive() bool {
	if ses.pgid <= 0 {
		return false // never started, or started by an earlier agent
	}
	if !ses.hasEnded() {
		return true
	}
	ses.reapMu.Lock()
	defer ses.reapMu.Unlock()
	return !ses.reaped || len(ses.liveLeftovers()) > 0
}

// signalLeftovers signals each live leftover through a pidfd, after checking
// that the pid still names the same process. It returns how many it
// signalled. ses.reapMu must be held.
func (ses *Session) signalLeftovers(sig syscall.Signal) int {
	n := 0
	for _, pid := range ses.liveLeftovers() {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		// The pidfd pins the process: if the start time still matches,
		// the signal reaches the process we recorded.
		if st, err := procStart(pid); err == nil && st == ses.leftovers[pid] {
			if unix.PidfdSendSignal(fd, sig, nil, 0) == nil {
				n++
			}
		}
		unix.Close(fd)
	}
	return n
}

// liveLeftovers updates the recorded leftovers (drops those gone or whose
// pid was reused, adds their children in the same group) and returns their
// pids. ses.reapMu must be held.
func (ses *Session) liveLeftovers() []int {
	if len(ses.leftovers) == 0 {
		return nil
	}
	procs := scanProcs()
	for pid, start := range ses.leftovers {
		if p, ok := procs[pid]; !ok || p.start != start || p.zombie {
			delete(ses.leftovers, pid)
		}
	}
	for grew := true; grew; {
		grew = false
		for pid, p := range procs {
			_, known := ses.leftovers[pid]
			if pst, ok := ses.leftovers[p.ppid]; ok && !known && p.pgid == ses.pgid && !p.zombie && p.start >= pst {
				ses.leftovers[pid] = p.start
				grew = true
			}
		}
	}
	pids := make([]int, 0, len(ses.leftovers))
	for pid := range ses.leftovers {
		pids = append(pids, pid)
	}
	return pids
}
