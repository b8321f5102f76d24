package backend

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"octo/internal/config"
	"octo/internal/passwd"
)

// ErrUserNotServed matches lookups of users that do not exist or that the
// [users] policy does not serve.
var ErrUserNotServed = errors.New("user not served")

// usersCacheTTL bounds how long a lookup is reused; /etc/passwd rarely changes.
const usersCacheTTL = 30 * time.Second

// Users resolves Linux users and applies the [users] policy to them.
type Users struct {
	policy config.Users
	self   uint32 // the control plane's own uid, never served unless listed
	// The kernel's overflow uid and gid (65534, "nobody" and "nogroup"),
	// what unmapped ids show as: never served unless listed.
	overflowUID, overflowGID uint32
	passwd                   string // where login shells are read: /etc/passwd

	mu    sync.Mutex
	cache map[cacheKey]cachedUser
}

type cachedUser struct {
	u   User
	err error
	at  time.Time
}

// NewUsers returns a resolver applying policy.
func NewUsers(policy config.Users) *Users {
	return &Users{policy: policy, self: uint32(os.Getuid()),
		overflowUID: overflowID("/proc/sys/kernel/overflowuid"),
		overflowGID: overflowID("/proc/sys/kernel/overflowgid"),
		passwd:      passwd.File, cache: map[cacheKey]cachedUser{}}
}

// overflowID reads the kernel's overflow uid or gid, 65534 unless set otherwise.
func overflowID(file string) uint32 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 65534
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(data)), 10, 32)
	if err != nil {
		return 65534
	}
	return uint32(v)
}

// Lookup returns the user called name if the policy serves them.
func (s *Users) Lookup(name string) (User, error) {
	return s.cached(cacheKey{byName, name}, func() (passwd.Entry, error) {
		e, err := passwd.Lookup(s.passwd, name)
		return orNSS(e, err, func() (*user.User, error) { return user.Lookup(name) })
	})
}

// LookupUID returns the user with uid if the policy serves them.
func (s *Users) LookupUID(uid uint32) (User, error) {
	id := strconv.FormatUint(uint64(uid), 10)
	return s.cached(cacheKey{byUID, id}, func() (passwd.Entry, error) {
		e, err := passwd.LookupUID(s.passwd, uid)
		return orNSS(e, err, func() (*user.User, error) { return user.LookupId(id) })
	})
}

// orNSS returns a passwd file lookup's entry, or, for a user the file
// does not list, what os/user says (NSS, in a build with cgo): an entry
// without a login shell.
func orNSS(e passwd.Entry, err error, nss func() (*user.User, error)) (passwd.Entry, error) {
	if !errors.Is(err, passwd.ErrNoEntry) {
		return e, err
	}
	pu, err := nss()
	if err != nil {
		return passwd.Entry{}, err
	}
	uid, err1 := strconv.ParseUint(pu.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(pu.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return passwd.Entry{}, fmt.Errorf("user %s has a non-numeric uid or gid", pu.Username)
	}
	return passwd.Entry{Name: pu.Username, UID: uint32(uid), GID: uint32(gid), Home: pu.HomeDir}, nil
}

// NameOf returns the name of the user with uid, whether or not the policy
// serves them (an admin on the Unix socket may be unserved root).
func (s *Users) NameOf(uid uint32) (string, error) {
	id := strconv.FormatUint(uint64(uid), 10)
	key := cacheKey{nameOfUID, id}
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Since(c.at) < usersCacheTTL {
		return c.u.Name, c.err
	}
	e, err := passwd.LookupUID(s.passwd, uid)
	e, err = orNSS(e, err, func() (*user.User, error) { return user.LookupId(id) })
	s.put(key, cachedUser{User{Name: e.Name}, err, time.Now()})
	return e.Name, err
}

func (s *Users) cached(key cacheKey, lookup func() (passwd.Entry, error)) (User, error) {
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Since(c.at) < usersCacheTTL {
		return c.u, c.err
	}
	u, err := s.resolve(lookup)
	s.put(key, cachedUser{u, err, time.Now()})
	return u, err
}

// cacheKey keys the cache by what was asked: a lookup by name needs no
// string built, which matters on every request.
type cacheKey struct {
	kind cacheKind
	s    string // user name or decimal uid
}

type cacheKind uint8

const (
	byName    cacheKind = iota // Lookup
	byUID                      // LookupUID
	nameOfUID                  // NameOf
)

// maxCached bounds the cache; admins can make it look up any name.
const maxCached = 4096

func (s *Users) put(key cacheKey, c cachedUser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[key] = c
}

func (s *Users) resolve(lookup func() (passwd.Entry, error)) (User, error) {
	e, err := lookup()
	if err != nil {
		return User{}, fmt.Errorf("%w: %v", ErrUserNotServed, err)
	}
	u := User{Name: e.Name, UID: e.UID, GID: e.GID, Home: e.Home}
	if err := s.allowed(u, e.Shell); err != nil {
		return User{}, err
	}
	return u, nil
}

// allowed applies the policy: listed names always; otherwise never root,
// the control plane itself, uids below min_uid, the overflow uid or gid
// (nobody) or an account that cannot log in (shell nologin or false, or
// none known: a user the passwd file does not list); then the group, if
// any.
func (s *Users) allowed(u User, shell string) error {
	p := s.policy
	if slices.Contains(p.Allow, u.Name) {
		return nil
	}
	deny := func(why string) error {
		return fmt.Errorf("%w: user %s %s (see [users] in the config)", ErrUserNotServed, u.Name, why)
	}
	switch {
	case u.UID == 0:
		return deny("is root and not listed in users.allow")
	case u.UID == s.self:
		return deny("is the control plane's own user and not listed in users.allow")
	case u.UID < p.MinUID:
		return deny(fmt.Sprintf("has uid %d, below users.min_uid %d, and is not listed in users.allow", u.UID, p.MinUID))
	case u.UID == s.overflowUID || u.GID == s.overflowGID:
		return deny(fmt.Sprintf("has the overflow uid or gid (%d:%d, the kernel's \"nobody\") and is not listed in users.allow", u.UID, u.GID))
	case shell == "":
		return deny(fmt.Sprintf("has no entry in %s, so no login shell to check, and is not listed in users.allow", s.passwd))
	case noLogin(shell):
		return deny(fmt.Sprintf("has the shell %s (no logins) and is not listed in users.allow", shell))
	}
	if p.Group == "" {
		if len(p.Allow) > 0 {
			return deny("is not listed in users.allow")
		}
		return nil
	}
	g, err := user.LookupGroup(p.Group)
	if err != nil {
		return deny(fmt.Sprintf("cannot be checked against users.group: %v", err))
	}
	gid := strconv.FormatUint(uint64(u.GID), 10)
	pu := &user.User{Uid: strconv.FormatUint(uint64(u.UID), 10), Gid: gid, Username: u.Name, HomeDir: u.Home}
	ids, err := pu.GroupIds()
	if err != nil {
		ids = []string{gid}
	}
	if slices.Contains(ids, g.Gid) || gid == g.Gid {
		return nil
	}
	return deny("is not in users.allow nor in group " + p.Group)
}

// noLogin reports whether shell refuses logins: nologin or false, wherever
// installed.
func noLogin(shell string) bool {
	switch path.Base(shell) {
	case "nologin", "false":
		return true
	}
	return false
}
