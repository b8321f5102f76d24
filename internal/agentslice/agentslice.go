// Package agentslice spreads the users' agent units over a fixed set of
// systemd slices, so that starting one user's agent costs systemd work in
// proportion to a few users' units rather than to every user's.
//
// Why: when systemd 252 starts a unit, it walks every unit loaded in the
// unit's slice to recompute which cgroup controllers the slice needs
// (unit_add_family_to_cgroup_realize_queue), and each user's enabled socket
// keeps that user's agent unit loaded. With every agent in one slice, each
// start walked every user's unit: per start cost grew with the number of
// users, and a morning's wave of first requests with its square. Slices
// nest, so the agents stay under system-octo\x2dagent.slice, which an
// operator can still cap as a whole.
package agentslice

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Groups is the number of slices the agents are spread over: each start
// then walks about users/Groups units in its slice and the Groups slices
// beside it, least at about Groups² users. Fixed, so that a user's slice
// never changes while their agent runs.
const Groups = 32

// Parent is the slice the groups are in: the one systemd puts every
// octo-agent@ unit in by default (a user whose socket is not enabled).
const Parent = `system-octo\x2dagent.slice`

// Of returns the slice of the agent unit octo-agent@INSTANCE.service, where
// instance is the unit's instance name as systemd spells it (escaped).
func Of(instance string) string {
	h := fnv.New32a()
	h.Write([]byte(instance))
	// A slice named P-NN.slice nests in P.slice.
	return fmt.Sprintf("%s-%02d.slice", strings.TrimSuffix(Parent, ".slice"), h.Sum32()%Groups)
}

// Instances returns the instance names of the octo-agent@ sockets and
// services enabled in the given unit directories (the links in their
// *.wants and *.requires directories that systemctl enable makes), sorted,
// each once. A directory that does not exist, or a file where one was
// expected, holds none; one that cannot be read is reported in the error,
// and the others' instances are still returned.
func Instances(unitDirs ...string) ([]string, error) {
	var out []string
	var errs []error
	for _, dir := range unitDirs {
		for _, kind := range []string{"wants", "requires"} {
			deps, _ := filepath.Glob(filepath.Join(dir, "*."+kind)) // the pattern is valid
			for _, d := range deps {
				ents, err := os.ReadDir(d)
				if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
					errs = append(errs, err)
				}
				for _, e := range ents {
					if i, ok := instanceOf(e.Name()); ok {
						out = append(out, i)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// instanceOf returns the instance of octo-agent@INSTANCE.socket or
// octo-agent@INSTANCE.service, if name is one with a valid instance.
func instanceOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "octo-agent@")
	if !ok {
		return "", false
	}
	i, ok := strings.CutSuffix(rest, ".socket")
	if !ok {
		i, ok = strings.CutSuffix(rest, ".service")
	}
	return i, ok && validInstance(i)
}

// validInstance reports whether s may be a unit's instance name: the
// characters systemd allows there (alice@corp.example too), which keep it
// one path element.
func validInstance(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune(`:-_.\@`, c)
		if !ok {
			return false
		}
	}
	return true
}

// DropIn is the name of the drop-in files Write writes. Drop-ins apply in
// the order of their names, whatever their directory, and the last Slice=
// wins: an operator's own (systemctl edit writes override.conf) sorts after
// this one.
const DropIn = "00-octo-slice.conf"

// Write writes into dir (a generator's output directory), for each
// instance, a drop-in putting octo-agent@INSTANCE.service in its slice and
// one making octo-agent@INSTANCE.socket want that slice, so that the slice
// exists before the user's first request. It writes every instance it can
// and reports those it could not.
func Write(dir string, instances []string) error {
	var errs []error
	for _, i := range instances {
		s := Of(i)
		for unit, body := range map[string]string{
			"octo-agent@" + i + ".service": "[Service]\nSlice=" + s + "\n",
			"octo-agent@" + i + ".socket":  "[Unit]\nWants=" + s + "\n",
		} {
			d := filepath.Join(dir, unit+".d")
			err := os.MkdirAll(d, 0o755)
			if err == nil {
				err = os.WriteFile(filepath.Join(d, DropIn), []byte(body), 0o644)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
