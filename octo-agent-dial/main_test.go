package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"octo/internal/slurm"
)

var dialBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "octo-agent-dial-test")
	if err != nil {
		panic(err)
	}
	dialBin = filepath.Join(dir, "octo-agent-dial")
	if out, err := exec.Command("go", "build", "-o", dialBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build octo-agent-dial: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestCommandLine: version and help answer anywhere; outside a job octo
// submitted, the agent refuses to start and names what is missing; bad
// flags are refused before that.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"version"}, 0, "octo-agent-dial "},
		{[]string{"--help"}, 0, "usage: octo-agent-dial"},
		{[]string{"--flags"}, 0, "-idle-timeout"},
		{nil, 1, "$" + slurm.EnvGateway + " is not set"},
		{[]string{"--idle-timeout", "-1s"}, 1, "must not be negative"},
		{[]string{"--workspace", "rel"}, 1, "must be absolute"},
	}
	for _, tt := range tests {
		cmd := exec.Command(dialBin, tt.args...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.wantCode || !strings.Contains(string(out), tt.want) {
			t.Errorf("octo-agent-dial %q: exit %d, output %q; want exit %d and %q", tt.args, code, out, tt.wantCode, tt.want)
		}
	}
}
