package slurmbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
)

// AgentPath and DialPath are where InstallAgent puts octo-agent and
// octo-agent-dial in the box.
const (
	AgentPath = "/usr/local/bin/octo-agent"
	DialPath  = "/usr/local/bin/octo-agent-dial"
)

// InstallAgent builds octo-agent and octo-agent-dial (once per test
// binary) and installs them in the box at AgentPath and DialPath, where
// jobs on both nodes find them.
func (c *Cluster) InstallAgent(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "slurmbox-agent")
		for _, pkg := range []string{"octo-agent", "octo-agent-dial"} {
			if buildErr != nil {
				return
			}
			var out []byte
			if out, buildErr = exec.Command("go", "build", "-o", filepath.Join(builtDir, pkg), "octo/"+pkg).CombinedOutput(); buildErr != nil {
				t.Logf("go build %s: %s", pkg, out)
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build the agents: %v", buildErr)
	}
	for _, path := range []string{AgentPath, DialPath} {
		data, err := os.ReadFile(filepath.Join(builtDir, filepath.Base(path)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.Box.Path(path), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
