// Package passwd reads what os/user does not give from the system's user
// database: a user's login shell, and the current user's entry with its
// shell, with the environment as a fallback where there is no entry.
package passwd

import (
	"bufio"
	"bytes"
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

// Shell returns name's login shell from the passwd file at path; an entry
// with an empty shell field means /bin/sh.
func Shell(path, name string) (string, error) {
	e, err := find(path, func(f [][]byte) bool { return string(f[0]) == name })
	if err != nil {
		return "", err
	}
	if e == nil {
		return "", fmt.Errorf("no entry for %s in %s", name, path)
	}
	return e.Shell, nil
}

// Current returns the entry of the process's uid: from /etc/passwd in one
// read, else from os/user (NSS, where built with cgo), else from $USER,
// $HOME and $SHELL (a minimal container may have no entry for its uid).
func Current() (Entry, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	id := strconv.FormatUint(uint64(uid), 10)
	if e, err := find(File, func(f [][]byte) bool { return string(f[2]) == id }); err == nil && e != nil {
		return *e, nil
	}
	if u, err := user.LookupId(id); err == nil {
		return Entry{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
	}
	e := Entry{Name: os.Getenv("USER"), UID: uid, GID: gid, Home: os.Getenv("HOME"), Shell: os.Getenv("SHELL")}
	if e.Name == "" || e.Home == "" {
		return Entry{}, fmt.Errorf("uid %d has no passwd entry and $USER or $HOME is unset; set them or pass --user and --home", uid)
	}
	return e, nil
}

// find returns the first entry of the passwd file at path whose fields
// match, or nil.
func find(path string, match func(fields [][]byte) bool) (*Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := bytes.Split(sc.Bytes(), []byte(":"))
		if len(fields) != 7 || len(fields[0]) == 0 || fields[0][0] == '#' || !match(fields) {
			continue
		}
		uid, err1 := strconv.ParseUint(string(fields[2]), 10, 32)
		gid, err2 := strconv.ParseUint(string(fields[3]), 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("malformed entry for %s in %s", fields[0], path)
		}
		shell := string(fields[6])
		if shell == "" {
			shell = "/bin/sh"
		}
		return &Entry{Name: string(fields[0]), UID: uint32(uid), GID: uint32(gid), Home: string(fields[5]), Shell: shell}, nil
	}
	return nil, sc.Err()
}
