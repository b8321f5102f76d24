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
	builtBin  string
	buildErr  error
)

// AgentPath is where InstallAgent puts octo-agent in the box.
const AgentPath = "/usr/local/bin/octo-agent"

// InstallAgent builds octo-agent (once per test binary) and installs it
// in the box at AgentPath, where jobs on both nodes find it.
func (c *Cluster) InstallAgent(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slurmbox-agent")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "octo-agent")
		if out, err := exec.Command("go", "build", "-o", builtBin, "octo/octo-agent").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("go build octo-agent: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build octo-agent: %v", buildErr)
	}
	data, err := os.ReadFile(builtBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Box.Path(AgentPath), data, 0o755); err != nil {
		t.Fatal(err)
	}
}
