// Package passwd reads the system's user database, /etc/passwd: an entry by
// name or uid with its login shell (which os/user does not give), in one
// pass over a file of any number of users, and the current user's entry
// with the environment as a fallback where there is none.
package passwd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// File is the system's user database.
const File = "/etc/passwd"

// Entry is a user's account.
type Entry struct {
	Name  string
	UID   uint32
	GID   uint32
	Home  string
	Shell string // "" when not known (an entry from NSS, or none)
}

// ErrNoEntry matches lookups of names or uids the passwd file does not list.
var ErrNoEntry = errors.New("unknown user")

// Lookup returns name's entry in the passwd file at path.
func Lookup(path, name string) (Entry, error) {
	return find(path, 0, name)
}

// LookupUID returns the entry of uid in the passwd file at path.
func LookupUID(path string, uid uint32) (Entry, error) {
	return find(path, 2, strconv.FormatUint(uint64(uid), 10))
}

// Shell returns name's login shell from the passwd file at path; an entry
// with an empty shell field means /bin/sh.
func Shell(path, name string) (string, error) {
	e, err := Lookup(path, name)
	return e.Shell, err
}

// Current returns the entry of the process's uid: from /etc/passwd in one
// read, else from os/user (NSS, where built with cgo), else from $USER,
// $HOME and $SHELL (a minimal container may have no entry for its uid).
func Current() (Entry, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if e, err := LookupUID(File, uid); err == nil {
		return e, nil
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return Entry{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
	}
	e := Entry{Name: os.Getenv("USER"), UID: uid, GID: gid, Home: os.Getenv("HOME"), Shell: os.Getenv("SHELL")}
	if e.Name == "" || e.Home == "" {
		return Entry{}, fmt.Errorf("uid %d has no passwd entry and $USER or $HOME is unset; set them or pass --user and --home", uid)
	}
	return e, nil
}

// find returns the first entry of the passwd file at path whose field
// number key (0 the name, 2 the uid) is want. It runs on every user's first
// request and every agent start, on files of thousands of lines: a line is
// split only once its key matches.
func find(path string, key int, want string) (Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' || string(field(line, key)) != want {
			continue
		}
		fields := bytes.Split(line, []byte(":"))
		if len(fields) != 7 || len(fields[0]) == 0 {
			continue
		}
		uid, err1 := strconv.ParseUint(string(fields[2]), 10, 32)
		gid, err2 := strconv.ParseUint(string(fields[3]), 10, 32)
		if err1 != nil || err2 != nil {
			return Entry{}, fmt.Errorf("malformed entry for %s in %s", fields[0], path)
		}
		shell := string(fields[6])
		if shell == "" {
			shell = "/bin/sh"
		}
		return Entry{Name: string(fields[0]), UID: uint32(uid), GID: uint32(gid), Home: string(fields[5]), Shell: shell}, nil
	}
	if err := sc.Err(); err != nil {
		return Entry{}, err
	}
	what := want
	if key == 2 {
		what = "uid " + want
	}
	return Entry{}, fmt.Errorf("no entry for %s in %s: %w", what, path, ErrNoEntry)
}

// field returns the n-th colon-separated field of line, or nil.
func field(line []byte, n int) []byte {
	for ; n > 0; n-- {
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return nil
		}
		line = line[i+1:]
	}
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		return line[:i]
	}
	return line
}
