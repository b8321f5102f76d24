package agent

import (
	"errors"
	"fmt"
	"octo/internal/passwd"
	"os/user"
	"strconv"
)

// CurrentUser returns the login name and home of the user the process runs
// as (passwd.Current).
func CurrentUser() (name, home string, err error) {
	e, err := passwd.Current()
	return e.Name, e.Home, err
}

// ErrUnknownUser is returned by LookupUID for a name with no passwd entry.
var ErrUnknownUser = errors.New("unknown user")

// LookupUID resolves a user name or a numeric uid to a uid.
func LookupUID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	if e, err := passwd.Lookup(passwd.File, s); err == nil {
		return e.UID, nil // one read of /etc/passwd, at every agent start
	}
	u, err := user.Lookup(s) // NSS, in a build with cgo
	if err != nil {
		return 0, fmt.Errorf("user %q: %w", s, ErrUnknownUser)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q: %w", s, u.Uid, err)
	}
	return uint32(n), nil
}
