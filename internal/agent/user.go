package agent

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// CurrentUser returns the login name and home of the user the process runs
// as: from its passwd entry, else from $USER and $HOME (a minimal container
// may have no entry for its uid).
func CurrentUser() (name, home string, err error) {
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		return u.Username, u.HomeDir, nil
	}
	name, home = os.Getenv("USER"), os.Getenv("HOME")
	if name == "" || home == "" {
		return "", "", fmt.Errorf("uid %d has no passwd entry and $USER or $HOME is unset; set them or pass --user and --home", os.Getuid())
	}
	return name, home, nil
}

// ErrUnknownUser is returned by LookupUID for a name with no passwd entry.
var ErrUnknownUser = errors.New("unknown user")

// LookupUID resolves a user name or a numeric uid to a uid.
func LookupUID(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("user %q: %w", s, ErrUnknownUser)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q: %w", s, u.Uid, err)
	}
	return uint32(n), nil
}
