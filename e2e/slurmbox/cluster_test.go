package slurmbox

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBatchRunsAsUserOnNodes submits one job per node as alice and one as
// bob, and checks that each ran on the node Slurm chose, as its submitter,
// and wrote to the shared home.
func TestBatchRunsAsUserOnNodes(t *testing.T) {
	c := Start(t, "alice", "bob")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cases := []struct{ user, node string }{{"alice", "h1"}, {"alice", "h2"}, {"bob", "h1"}}
	for _, tc := range cases {
		out := "/home/" + tc.user + "/out-" + tc.node
		if _, err := c.Run(ctx, tc.user, "sbatch", "--wait", "--quiet", "--nodelist="+tc.node,
			"--output="+out, "--wrap", "echo $(id -un) $(id -u) $(hostname)"); err != nil {
			t.Fatalf("sbatch as %s on %s: %v\n%s", tc.user, tc.node, err, c.Logs())
		}
		got, err := c.Run(ctx, "", "cat", out)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := c.Run(ctx, "", "id", "-u", tc.user)
		want := tc.user + " " + strings.TrimSpace(uid) + " " + tc.node
		if strings.TrimSpace(got) != want {
			t.Errorf("job as %s on %s printed %q, want %q", tc.user, tc.node, strings.TrimSpace(got), want)
		}
		owner, _ := c.Run(ctx, "", "stat", "-c", "%U", out)
		if strings.TrimSpace(owner) != tc.user {
			t.Errorf("%s belongs to %q, want %s", out, strings.TrimSpace(owner), tc.user)
		}
	}
	// A node network of its own: h1 cannot see the control plane's
	// loopback, but reaches the controller's address.
	if _, err := c.Run(ctx, "", "nsenter", "--net=/var/run/netns/h1", "ip", "-brief", "addr", "show", "eth0"); err != nil {
		t.Fatal(err)
	}
}
