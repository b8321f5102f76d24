package agent_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// TestOutputBudget keeps the finished sessions' output within the budget by
// pruning the oldest finished sessions, never a running one.
func TestOutputBudget(t *testing.T) {
	cfg := testConfig(t)
	cfg.OutputCap = 10000
	cfg.OutputBudget = 25000 // room for two full finished outputs
	c, stop := runServer(t, cfg)
	ctx := ctxT(t)
	run, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", "head -c 10000 /dev/zero; exec sleep 1000"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 4 {
		s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"head", "-c", "20000", "/dev/zero"}})
		if err != nil {
			t.Fatal(err)
		}
		waitEnd(t, c, s.ID)
		ids = append(ids, s.ID)
	}
	want := []string{run.ID, ids[2], ids[3]}
	check := func(c *agentrpc.Client, when string) {
		var got []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			list, err := c.Sessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, s := range list {
				got = append(got, s.ID)
			}
			if slices.Equal(got, want) || time.Now().After(deadline) {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: sessions %v, want the running one and the newest two finished %v", when, got, want)
		}
		var outBytes int64
		files, _ := filepath.Glob(filepath.Join(cfg.StateDir, "sessions", "*.out"))
		for _, f := range files {
			if f == filepath.Join(cfg.StateDir, "sessions", run.ID+".out") {
				continue
			}
			if st, err := os.Stat(f); err == nil {
				outBytes += st.Size() - 8 // the header
			}
		}
		if outBytes > cfg.OutputBudget {
			t.Errorf("%s: finished output on disk %d bytes, over the budget %d", when, outBytes, cfg.OutputBudget)
		}
	}
	check(c, "running")
	// Stopping the agent ends the running session: now finished and the
	// oldest, it is the one pruned.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c2, stop2 := runServer(t, cfg)
	defer stop2()
	want = []string{ids[2], ids[3]}
	check(c2, "after restart")
}
