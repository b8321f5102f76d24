// Package tokens stores the control plane's API tokens: only their SHA-256
// hashes, in a 0600 JSON file written atomically.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Prefix starts every token, so that a leaked one is easy to recognise.
const Prefix = "octo_"

// FileName is the store's file inside the state directory.
const FileName = "tokens.json"

// lastUseEvery is how often at most a token's last-use time is written to disk.
const lastUseEvery = time.Minute

// Errors callers branch on.
var (
	ErrInvalid  = errors.New("invalid or revoked token")
	ErrNotFound = errors.New("no such token")
)

// Token is a stored token. The secret itself is never stored.
type Token struct {
	ID       string    `json:"id"` // first 12 hex digits of the hash
	User     string    `json:"user"`
	Name     string    `json:"name,omitempty"`
	Admin    bool      `json:"admin,omitempty"`
	Hash     string    `json:"sha256"` // hex SHA-256 of the secret
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Store is the token file of one state directory. It is safe for concurrent
// use, and for use by several processes: changes are made under a file lock
// and a Store rereads the file when another process changed it.
type Store struct {
	dir string

	mu       sync.Mutex
	byHash   map[[sha256.Size]byte]*Token
	stamp    fileStamp            // of the file as last read or written
	dirty    map[string]time.Time // token ID -> last use not yet written
	lastSync time.Time            // last time last-use times were written
	watch    *watcher             // nil: stat the file on every lookup
}

// Open returns the store in dir, creating dir (0700) if needed. A missing
// file is an empty store.
func Open(dir string) (*Store, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, dirty: map[string]time.Time{}, lastSync: time.Now(), watch: newWatcher(dir)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(true); err != nil {
		s.watch.close()
		return nil, err
	}
	return s, nil
}

// newSecret returns a fresh secret token and its hash.
func newSecret() (string, [sha256.Size]byte) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	secret := Prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, sha256.Sum256([]byte(secret))
}

// Create makes a token for user and returns its secret, which is shown only
// this once, and its record.
func (s *Store) Create(user, name string, admin bool) (string, Token, error) {
	if user == "" {
		return "", Token{}, errors.New("create token: empty user name")
	}
	secret, sum := newSecret()
	t := Token{
		ID:      hex.EncodeToString(sum[:6]),
		User:    user,
		Name:    name,
		Admin:   admin,
		Hash:    hex.EncodeToString(sum[:]),
		Created: time.Now().UTC().Truncate(time.Second),
	}
	err := s.update(func(m map[[sha256.Size]byte]*Token) error {
		m[sum] = &t
		return nil
	})
	if err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	return secret, t, nil
}

// List returns all tokens, oldest first.
func (s *Store) List() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(false); err != nil {
		return nil, err
	}
	return sorted(s.byHash), nil
}

// Revoke deletes the token with the given ID and returns its record.
func (s *Store) Revoke(id string) (Token, error) {
	var gone Token
	err := s.update(func(m map[[sha256.Size]byte]*Token) error {
		for k, t := range m {
			if t.ID == id {
				gone = *t
				delete(m, k)
				return nil
			}
		}
		return fmt.Errorf("%w: %q (see octo token list)", ErrNotFound, id)
	})
	return gone, err
}

// Authenticate returns the token whose secret is secret, and records its use.
func (s *Store) Authenticate(secret string) (Token, error) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 128 {
		return Token{}, ErrInvalid
	}
	sum := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch.mayHaveChanged() {
		// With a watch, an event means reread: a file's (inode, mtime, size)
		// can repeat when writes share a clock tick. Without one, compare them.
		if err := s.reloadLocked(s.watch != nil); err != nil {
			s.watch.invalidate()
			return Token{}, err
		}
	}
	t, ok := s.byHash[sum]
	if !ok {
		return Token{}, ErrInvalid
	}
	// The map lookup found the hash; compare it again in constant time so
	// that correctness never rests on the map alone.
	want, err := hex.DecodeString(t.Hash)
	if err != nil || subtle.ConstantTimeCompare(want, sum[:]) != 1 {
		return Token{}, ErrInvalid
	}
	now := time.Now().UTC()
	t.LastUsed = now
	s.dirty[t.ID] = now
	if now.Sub(s.lastSync) >= lastUseEvery {
		s.flushLocked()
	}
	return *t, nil
}

// Close flushes pending last-use times and stops watching the file.
func (s *Store) Close() error {
	err := s.Flush()
	s.watch.close()
	return err
}

// Flush writes pending last-use times. Call it before exiting.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Store) flushLocked() error {
	s.lastSync = time.Now()
	if len(s.dirty) == 0 {
		return nil
	}
	dirty := s.dirty
	s.dirty = map[string]time.Time{}
	return s.updateLocked(func(m map[[sha256.Size]byte]*Token) error {
		for _, t := range m {
			if u, ok := dirty[t.ID]; ok && u.After(t.LastUsed) {
				t.LastUsed = u
			}
		}
		return nil
	})
}

// update applies fn to the tokens read fresh from disk, under the file lock,
// and writes the result atomically.
func (s *Store) update(fn func(map[[sha256.Size]byte]*Token) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updateLocked(fn)
}
