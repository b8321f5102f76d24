package session

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// readNoFollow reads the file at path, refusing a symlink.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// record is a session's persisted state: StateDir/sessions/ID.json, next
// to its output ID.out.
type record struct {
	agentrpc.Session
	ProcStart uint64 // start time of PID in clock ticks since boot (/proc/PID/stat)
	OutputCap int64  // the ring size of ID.out
}

// newID returns a random, unguessable session id: 16 hex digits.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validID reports whether id has the shape newID gives, so that it is safe
// in a file name.
func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (m *Manager) recordPath(id string) string { return filepath.Join(m.dir, id+".json") }
func (m *Manager) outputPath(id string) string { return filepath.Join(m.dir, id+".out") }

// save writes rec atomically: temp file, fsync if durable, rename.
func (m *Manager) save(rec record, durable bool) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := m.recordPath(rec.ID) + ".tmp"
	os.Remove(tmp) // a stale one from a crash
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, m.recordPath(rec.ID))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save session %s: %w", rec.ID, err)
	}
	return nil
}

// syncRecord makes a saved record durable.
func (m *Manager) syncRecord(id string) {
	if f, err := os.OpenFile(m.recordPath(id), os.O_RDONLY|unix.O_NOFOLLOW, 0); err == nil {
		f.Sync()
		f.Close()
	}
}

// remove deletes a session's files.
func (m *Manager) remove(id string) {
	os.Remove(m.recordPath(id))
	os.Remove(m.outputPath(id))
}

// loadRecords reads the records in the state dir, oldest first. Records that
// say running belong to an agent that died, and become lost, unless adopt
// holds the session, handed over by the agent before this one. Stray temp
// files and outputs without a record are removed.
func (m *Manager) loadRecords(adopt map[string]*Session) ([]*Session, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("read state dir: %w", err)
	}
	have := map[string]bool{}
	var out []*Session
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validID(id) {
			continue
		}
		if ses := adopt[id]; ses != nil {
			ses.m = m
			have[id] = true
			out = append(out, ses)
			continue
		}
		b, err := readNoFollow(m.recordPath(id))
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.ID != id || rec.OutputCap <= 0 {
			m.log.Warn("dropping unreadable session record", "session", id, "err", err)
			m.remove(id)
			continue
		}
		have[id] = true
		ses := newSession(m, rec)
		close(ses.ended)
		ses.out = openOutput(m.outputPath(id), rec.OutputCap)
		ses.rec.OutputSize = ses.out.Size()
		if rec.State == agentrpc.StateRunning {
			m.markLost(ses)
		}
		out = append(out, ses)
	}
	for id, ses := range adopt {
		if !have[id] { // its record was removed behind the agent's back
			ses.m = m
			have[id] = true
			out = append(out, ses)
		}
	}
	for _, e := range ents {
		name := e.Name()
		id, _, _ := strings.Cut(name, ".")
		if strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".out") && !have[id] {
			os.Remove(filepath.Join(m.dir, name))
		}
	}
	slices.SortFunc(out, func(a, b *Session) int { return a.rec.StartTime.Compare(b.rec.StartTime) })
	return out, nil
}

// markLost records that ses was running when its agent died.
func (m *Manager) markLost(ses *Session) {
	rec := &ses.rec
	rec.State = agentrpc.StateLost
	rec.Error = "the agent exited while the session ran"
	if st, err := procStart(rec.PID); err == nil && st == rec.ProcStart {
		rec.Error = fmt.Sprintf("the agent exited while the session ran; process %d still runs outside its control", rec.PID)
	}
	rec.EndTime = time.Now()
	if st, err := os.Stat(m.outputPath(rec.ID)); err == nil && st.ModTime().After(rec.StartTime) {
		rec.EndTime = st.ModTime() // last output: the best guess of when it ended
	}
	if err := m.save(*rec, true); err != nil {
		m.log.Warn("session record not saved", "session", rec.ID, "err", err)
	}
	m.log.Info("session lost", "session", rec.ID, "pid", rec.PID)
}

// prune removes the oldest finished sessions beyond Config.KeepSessions,
// and beyond Config.OutputBudget bytes of output kept for finished sessions
// together. m.mu must be held.
func (m *Manager) prune() {
	finished := 0
	var bytes int64
	for _, ses := range m.order {
		if !ses.isRunning() {
			finished++
			bytes += ses.out.kept()
		}
	}
	keep, budget := m.cfg.KeepSessions, m.cfg.OutputBudget
	if finished <= keep && bytes <= budget {
		return
	}
	kept := m.order[:0]
	for _, ses := range m.order {
		if (finished > keep || bytes > budget) && !ses.isRunning() {
			finished--
			bytes -= ses.out.kept()
			delete(m.byID, ses.id)
			m.remove(ses.id)
			continue
		}
		kept = append(kept, ses)
	}
	clear(m.order[len(kept):])
	m.order = kept
}
