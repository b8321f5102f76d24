//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"octo/e2e/box"
	"octo/internal/agentrpc"
)

// The suite boots one box for each run of the package's tests (the first
// test that needs it boots it; -count=N runs them N times) and shares it
// across the numbered tests, which run in file order (activation_test.go,
// then lifecycle_test.go; test 1 must see a box where nothing was requested
// yet) and build on each other's state only where a test says so.
var (
	suiteOnce sync.Once
	suiteBox  *box.Box
	suiteErr  error  // boot or install failed: every test fails
	skipWhy   string // the machine cannot run boxes: every test skips
	shareDir  string
	tokens    = map[string]string{} // user -> bearer token
	// usedBy holds, by name, the tests that used the current box. A name
	// seen again from another test means the suite runs again (go test
	// -count=N): that run gets a fresh box, as the first did.
	usedBy = map[string]*testing.T{}
)

// Users made inside the box (never on the host).
var (
	servedUsers = []string{"alice", "bob", "dev-ops", "carol"} // each with octo-agent@USER.socket
	noSocket    = "dave"                                       // allowed, but no agent socket
	stranger    = "eve"                                        // in group octo, owns no agent
)

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h, os.Args[1:]))
	}
	code := m.Run()
	if suiteBox != nil {
		if err := suiteBox.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: tear down box:", err)
			code = 1
		}
	}
	if shareDir != "" {
		os.RemoveAll(shareDir)
	}
	os.Exit(code)
}

// setup returns the booted, installed box, skipping the test (or failing it
// when CI=true) if this machine cannot run one.
func setup(t testing.TB) *box.Box {
	t.Helper()
	if tt, ok := t.(*testing.T); ok { // benchmarks call setup once per round
		if prev := usedBy[t.Name()]; prev != nil && prev != tt {
			if err := resetSuite(); err != nil {
				t.Fatalf("e2e: tear down the previous run's box: %v", err)
			}
		}
		usedBy[t.Name()] = tt
	}
	suiteOnce.Do(func() {
		if err := box.Check(); err != nil {
			skipWhy = err.Error()
			return
		}
		suiteBox, suiteErr = bootSuite()
	})
	if skipWhy != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("e2e suite required (CI=true) but cannot run: %s", skipWhy)
		}
		t.Skipf("skipping end-to-end test: %s (needs root, unshare, nsenter, cgroup2 and systemd; run .ci/setup-e2e.sh)", skipWhy)
	}
	if suiteErr != nil {
		t.Fatalf("e2e setup: %v", suiteErr)
	}
	return suiteBox
}

// resetSuite tears down the box, so that the next setup boots a new one.
func resetSuite() error {
	var err error
	if suiteBox != nil {
		err = suiteBox.Close()
	}
	if shareDir != "" {
		os.RemoveAll(shareDir)
	}
	suiteOnce, suiteBox, suiteErr, skipWhy, shareDir = sync.Once{}, nil, nil, "", ""
	tokens = map[string]string{}
	clear(usedBy)
	return err
}

func bootSuite() (*box.Box, error) {
	var err error
	shareDir, err = os.MkdirTemp("", "octo-e2e-")
	if err != nil {
		return nil, err
	}
	if err := prepareShare(shareDir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := box.Boot(ctx, shareDir)
	if err != nil {
		return nil, err
	}
	if err := installInBox(ctx, b); err != nil {
		return b, err // TestMain still closes it
	}
	return b, nil
}

// prepareShare builds both binaries and copies the installer's sources and
// this test binary (the in-box helper) into the shared directory.
func prepareShare(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, filepath.Join(dir, "src", "testdata")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, pkg := range []string{"octo", "octo-agent", "octo-agent-dial"} {
		// OCTO_E2E_BINDIR tests prebuilt binaries instead of this tree's.
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, pkg), "./"+pkg)
		if pre := os.Getenv("OCTO_E2E_BINDIR"); pre != "" {
			cmd = exec.Command("cp", filepath.Join(pre, pkg), filepath.Join(bin, pkg))
		}
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, c := range [][]string{
		{"cp", self, filepath.Join(bin, "e2e.test")},
		{"cp", "-r", "../units", filepath.Join(dir, "src", "units")},
		{"cp", "../testdata/config.example.toml", filepath.Join(dir, "src", "testdata")},
		{"chmod", "-R", "a+rX", dir},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// installInBox runs the installer as the README says, makes the test users,
// enables the sockets (starting no service) and creates tokens.
func installInBox(ctx context.Context, b *box.Box) error {
	script := `
OCTO_BINDIR=/octo-share/bin sh /octo-share/src/units/install.sh
for u in ` + strings.Join(servedUsers, " ") + " " + noSocket + `; do useradd -m -U -s /bin/sh "$u"; done
useradd -m -U -s /bin/sh -G octo ` + stranger + `
systemctl enable --now octo.socket`
	for _, u := range servedUsers {
		script += " octo-agent@" + u + ".socket"
	}
	if out, err := b.Sh(ctx, script); err != nil {
		return fmt.Errorf("install in box: %w\n%s", err, out)
	}
	// Tokens are created by root before octo.service ever ran; the service's
	// StateDirectory= must leave them readable by user octo (TestTokensOwnedByOcto).
	for _, u := range append(append([]string{}, servedUsers...), noSocket) {
		tok, err := createToken(ctx, b, u)
		if err != nil {
			return err
		}
		tokens[u] = tok
	}
	return nil
}

// createToken runs `octo token create USER` in the box and returns the token.
func createToken(ctx context.Context, b *box.Box, user string) (string, error) {
	out, err := b.Run(ctx, "/usr/local/bin/octo", "token", "create", user)
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", fmt.Errorf("octo token create %s printed no token", user)
	}
	return f[len(f)-1], nil
}

// The helper: the test binary, copied into the box, run as some user with
// OCTO_E2E_HELPER set, to do what a shell cannot (speak net/rpc).
const helperEnv = "OCTO_E2E_HELPER"

// helperResult is what the helper prints (JSON) for the test to read.
type helperResult struct {
	Info  *agentrpc.Info `json:"info,omitempty"`
	Error string         `json:"error,omitempty"`
	Code  string         `json:"code,omitempty"` // agentrpc error code, "conn_lost" or ""
}

func helper(name string, args []string) int {
	switch name {
	case "agent-info": // agent-info SOCKET: call Agent.Info on SOCKET
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: agent-info SOCKET")
			return 2
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var res helperResult
		c, err := agentrpc.Dial(ctx, "unix", args[0])
		if err == nil {
			var info agentrpc.Info
			info, err = c.Info(ctx)
			if err == nil {
				res.Info = &info
			}
			c.Close()
		}
		if err != nil {
			res.Error = err.Error()
			var ae *agentrpc.Error
			switch {
			case errors.As(err, &ae):
				res.Code = string(ae.Code)
			case errors.Is(err, agentrpc.ErrConnLost):
				res.Code = "conn_lost"
			}
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
	return 2
}
