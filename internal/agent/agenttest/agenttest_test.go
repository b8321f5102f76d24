package agenttest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

func TestStart(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "new-ws")
	sock := agenttest.Start(t, ws)
	c, err := agentrpc.Dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Workspace != ws || info.UID != uint32(os.Getuid()) {
		t.Errorf("Info = %+v, want workspace %s and uid %d", info, ws, os.Getuid())
	}
	if st, err := os.Stat(ws); err != nil || !st.IsDir() {
		t.Errorf("workspace not created: %v", err)
	}
}
