package tokens

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"octo/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileStamp identifies a version of the token file.
type fileStamp struct {
	ino   uint64
	mtime time.Time
	size  int64
}

func stampOf(fi fs.FileInfo) fileStamp {
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

type fileFormat struct {
	Tokens []*Token `json:"tokens"`
}

func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	return nil
}

func (s *Store) path() string { return filepath.Join(s.dir, FileName) }

// reloadLocked rereads the file if it changed since it was last read (or
// always, with force).
func (s *Store) reloadLocked(force bool) error {
	fi, err := os.Stat(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		s.byHash, s.stamp = map[[sha256.Size]byte]*Token{}, fileStamp{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if !force && stampOf(fi) == s.stamp && s.byHash != nil {
		return nil
	}
	m, st, err := s.read()
	if err != nil {
		return err
	}
	// Keep last-use times this process has not written yet.
	for _, t := range m {
		if u, ok := s.dirty[t.ID]; ok && u.After(t.LastUsed) {
			t.LastUsed = u
		}
	}
	s.byHash, s.stamp = m, st
	return nil
}

func (s *Store) read() (map[[sha256.Size]byte]*Token, fileStamp, error) {
	m := map[[sha256.Size]byte]*Token{}
	f, err := os.Open(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		return m, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("token store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("token store: %w", err)
	}
	var ff fileFormat
	if err := json.NewDecoder(f).Decode(&ff); err != nil {
		return nil, fileStamp{}, fmt.Errorf("token store %s: %w", s.path(), err)
	}
	for _, t := range ff.Tokens {
		var sum [sha256.Size]byte
		if b, err := hex.DecodeString(t.Hash); err != nil || len(b) != sha256.Size {
			return nil, fileStamp{}, fmt.Errorf("token store %s: token %s has a bad hash", s.path(), t.ID)
		} else {
			copy(sum[:], b)
		}
		m[sum] = t
	}
	return m, stampOf(fi), nil
}

func (s *Store) updateLocked(fn func(map[[sha256.Size]byte]*Token) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, _, err := s.read()
	if err != nil {
		return err
	}
	if err := fn(m); err != nil {
		return err
	}
	if err := s.write(m); err != nil {
		return err
	}
	s.stamp = fileStamp{} // force the next reload to pick up our own write
	return s.reloadLocked(true)
}

// lock takes an exclusive flock on a lock file next to the store, so that
// `octo token create` and a running server do not lose each other's writes.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, FileName+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("token store lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("token store lock: %w", err)
	}
	s.chownLikeDir(f.Name())
	return func() { f.Close() }, nil
}

// write replaces the file atomically and durably, mode 0600, owned like
// the state directory.
func (s *Store) write(m map[[sha256.Size]byte]*Token) error {
	data, err := json.MarshalIndent(fileFormat{Tokens: ptrs(sorted(m))}, "", "  ")
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	err = atomicfile.Write(s.path(), append(data, '\n'), 0o600, atomicfile.Options{Durable: true,
		Prepare: func(tmp *os.File) error { s.chownLikeDir(tmp.Name()); return nil }})
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	return nil
}

// chownLikeDir gives a file the state directory's owner, so that a token
// created by root with `octo token create` stays readable by the octo user
// that owns /var/lib/octo. It only matters (and only works) for root.
func (s *Store) chownLikeDir(name string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Chown(name, int(st.Uid), int(st.Gid))
	}
}

func sorted(m map[[sha256.Size]byte]*Token) []Token {
	out := make([]Token, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func ptrs(ts []Token) []*Token {
	out := make([]*Token, len(ts))
	for i := range ts {
		out[i] = &ts[i]
	}
	return out
}
