package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"octo/internal/client"
)

// The client commands speak the public HTTP API (internal/client): over
// $OCTO_URL with $OCTO_TOKEN when set, else over the Unix socket
// $OCTO_SOCKET (default /run/octo/octo.sock), where the kernel says who
// calls.

const clientUsage = `client commands ($OCTO_SOCKET, default /run/octo/octo.sock; or $OCTO_URL with $OCTO_TOKEN):
  octo run [-t] [-i] [-d] [--cwd DIR] [--env K=V]... [--name N] -- CMD [ARG...]
  octo attach [--offset N] ID         Ctrl-P Ctrl-Q detaches from a tty session, Ctrl-C from others
  octo ps [-a] [--json]
  octo logs [-f] ID
  octo stop [--grace D] ID
  octo signal ID SIGNAL
  octo rm [-f] ID...
  octo cp [-p] SRC DST                ":path" is in the workspace: octo cp data.csv :in/  octo cp :out/r.bin .
  octo ls [--json] [PATH]
  (every client command takes --user NAME, for admins)
`

// exitCode is an error that makes octo exit with a status of its own and
// print nothing: a session's exit status, passed on.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitStatus returns the status err asks octo to exit with, if it does.
func exitStatus(err error) (int, bool) {
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec), true
	}
	return 0, false
}

// clientCommands are the commands that call the API.
var clientCommands = map[string]func(context.Context, []string) error{
	"run":    runCmd,
	"attach": attachCmd,
	"ps":     psCmd,
	"logs":   logsCmd,
	"stop":   stopCmd,
	"signal": signalCmd,
	"rm":     rmCmd,
	"cp":     cpCmd,
	"ls":     lsCmd,
}

// cliFlags are the flags every client command takes.
type cliFlags struct {
	fs   *flag.FlagSet
	user string
	json bool
}

func newCLIFlags(name string, withJSON bool) *cliFlags {
	f := &cliFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.StringVar(&f.user, "user", "", "act for this user (admins only)")
	if withJSON {
		f.fs.BoolVar(&f.json, "json", false, "print JSON, for scripts")
	}
	return f
}

// parse parses flags anywhere among the arguments and checks the number of
// positional ones.
func (f *cliFlags) parse(args []string, minPos, maxPos int) ([]string, error) {
	pos, err := parseArgs(f.fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) < minPos || (maxPos >= 0 && len(pos) > maxPos) {
		return nil, fmt.Errorf("%w: %s takes %s", errUsage, f.fs.Name(), argCount(minPos, maxPos))
	}
	return pos, nil
}

func argCount(lo, hi int) string {
	switch {
	case lo == hi && lo == 0:
		return "no arguments"
	case lo == hi:
		return fmt.Sprintf("%d argument(s)", lo)
	case hi < 0:
		return fmt.Sprintf("at least %d argument(s)", lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

// client returns the API client the environment names, acting for --user.
func (f *cliFlags) client() (*client.Client, error) {
	c, err := client.FromEnv()
	if err != nil {
		return nil, err
	}
	return c.As(f.user), nil
}

// printJSON prints v indented, for --json.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// envFlag collects --env K=V flags.
type envFlag map[string]string

func (e envFlag) String() string { return "" }

func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	e[k] = val
	return nil
}
