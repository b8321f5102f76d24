package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// checkStateDir checks that nobody but uid (and root) can change what the
// agent finds on the path to its state dir, stateDir(ws): the workspace and
// each of .local, .local/state and the state dir that exists must be a real
// directory owned by uid and writable by no one else (a group-writable one
// only when its group is the user's gid). The agent creates the missing
// ones as the user. A directory the control plane may not look into (a
// private home) is left to the agent, as nobody else can look in either.
func checkStateDir(ws string, uid, gid uint32) error {
	rel, _ := filepath.Rel(ws, stateDir(ws))
	p := ws
	for i, part := range append([]string{""}, strings.Split(rel, string(filepath.Separator))...) {
		stat := os.Lstat
		if i == 0 {
			stat = os.Stat // the configured workspace may be a symlink
		} else {
			p = filepath.Join(p, part)
		}
		fi, err := stat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil
		} else if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory (%v)", p, fi.Mode().Type())
		case st.Uid != uid:
			return fmt.Errorf("%s is owned by uid %d, not the user's uid %d", p, st.Uid, uid)
		case fi.Mode().Perm()&0o002 != 0 || fi.Mode().Perm()&0o020 != 0 && st.Gid != gid:
			return fmt.Errorf("%s (mode %v) is writable by other users", p, fi.Mode().Perm())
		}
	}
	return nil
}
