package session

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrStateDirUnsafe is returned by New (and the agent's New) when the state dir or its sessions
// dir could be changed by someone else: a symlink, another owner, or
// writable by group or others. Anyone who can add entries there could plant
// session records or make the agent write through a symlink.
var ErrStateDirUnsafe = errors.New("state dir unsafe")

// checkOwnDir makes sure path is a real directory (not a symlink) owned by
// uid and not writable by group or others.
func checkOwnDir(path string, uid uint32) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink; make it a real directory: %w", path, ErrStateDirUnsafe)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory: %w", path, ErrStateDirUnsafe)
	case st == nil || st.Uid != uid:
		owner := -1
		if st != nil {
			owner = int(st.Uid)
		}
		return fmt.Errorf("%s is owned by uid %d, not the agent's uid %d; chown it: %w", path, owner, uid, ErrStateDirUnsafe)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s has mode %04o, writable by group or others; chmod go-w it: %w", path, fi.Mode().Perm(), ErrStateDirUnsafe)
	}
	return nil
}

// MakeOwnDir creates path (0700) if needed and checks it with checkOwnDir.
func MakeOwnDir(path string, uid uint32) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		if cerr := checkOwnDir(path, uid); errors.Is(cerr, ErrStateDirUnsafe) {
			return cerr // says better what is wrong
		}
		return fmt.Errorf("create state dir: %w", err)
	}
	return checkOwnDir(path, uid)
}
