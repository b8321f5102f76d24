package gateway_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"octo/e2e/slurmbox"
	"octo/internal/gateway"
	"octo/internal/slurm"
)

// clusterGateway is a gateway on a real Slurm cluster.
type clusterGateway struct {
	c    *slurmbox.Cluster
	g    *slurmbox.Gateway
	addr string
	uids map[string]uint32
}

func startGateway(t *testing.T, c *slurmbox.Cluster) *clusterGateway {
	g := slurmbox.StartGateway(t, c)
	return &clusterGateway{c: c, g: g, addr: g.Addr, uids: g.UIDs}
}

// submit runs a job for launch as user on node (no singleton: the test
// holds several launches of one user at once) and waits until it runs.
func (cg *clusterGateway) submit(ctx context.Context, t *testing.T, user, node, launch string) string {
	t.Helper()
	args, err := slurm.SbatchArgs(slurm.Spec{LaunchID: launch, Agent: "sleep 300", Extra: []string{"--nodelist=" + node}})
	if err != nil {
		t.Fatal(err)
	}
	args = slices.DeleteFunc(args, func(a string) bool { return a == "--dependency=singleton" })
	out, err := cg.c.Runner(user).Run(ctx, nil, args...)
	if err != nil {
		t.Fatalf("sbatch: %v\n%s", err, cg.c.Logs())
	}
	id, err := slurm.ParseJobID(out)
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, ok, err := slurm.FindJob(ctx, cg.c.Runner(""), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok && j.State == slurm.StateRunning {
			return id
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s never ran: %+v", id, j)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dialer is an agent of launch on node, proving itself with the MUNGE
// credential of mungeUser.
func (cg *clusterGateway) dialer(node, launch, token, mungeUser string) *gateway.Dialer {
	return &gateway.Dialer{
		Addr: cg.addr, CASHA256: cg.g.Fingerprint(), LaunchID: launch, Token: token,
		Munge: func(ctx context.Context) ([]byte, error) {
			return cg.c.Runner(mungeUser).Run(ctx, nil, "munge", "--no-input")
		},
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			return cg.c.Dial(ctx, node, network, address)
		},
	}
}

func refusedCode(err error) string {
	var r *gateway.RefusedError
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

// TestAdmission: an agent that proves its launch gets a certificate and
// its link reaches the control plane under the launch's user; each forged
// claim is refused with its reason.
func TestAdmission(t *testing.T) {
	c := slurmbox.Start(t, "alice", "bob")
	cg := startGateway(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	la, tokA := cg.g.NewLaunch("alice", cg.uids["alice"])
	jobA := cg.submit(ctx, t, "alice", "h1", la.ID)
	if err := cg.g.SetJob(la.ID, jobA); err != nil {
		t.Fatal(err)
	}

	// A connection from the wrong node, with alice's token and MUNGE:
	// refused, and the token is spent.
	if _, err := cg.dialer("h2", la.ID, tokA, "alice").Dial(ctx); refusedCode(err) != gateway.RefuseNode {
		t.Fatalf("agent of h1's job dialing from h2: %v, want refusal %q", err, gateway.RefuseNode)
	}
	if _, err := cg.dialer("h1", la.ID, tokA, "alice").Dial(ctx); refusedCode(err) != gateway.RefuseToken {
		t.Errorf("replayed token: %v, want refusal %q", err, gateway.RefuseToken)
	}

	// bob holding alice's token, from the right node, with his own MUNGE
	// credential: refused.
	lb, tokB := cg.g.NewLaunch("alice", cg.uids["alice"])
	cg.submit(ctx, t, "alice", "h1", lb.ID)
	if _, err := cg.dialer("h1", lb.ID, tokB, "bob").Dial(ctx); refusedCode(err) != gateway.RefuseMunge {
		t.Errorf("bob's MUNGE credential for alice's launch: %v, want refusal %q", err, gateway.RefuseMunge)
	}
	// A wrong token does not spend the launch's; a launch whose job is
	// bob's is refused even with the right token and MUNGE.
	lc, tokC := cg.g.NewLaunch("alice", cg.uids["alice"])
	cg.submit(ctx, t, "alice", "h2", lc.ID)
	if _, err := cg.dialer("h2", lc.ID, "wrong"+tokC, "alice").Dial(ctx); refusedCode(err) != gateway.RefuseToken {
		t.Errorf("wrong token: %v, want refusal %q", err, gateway.RefuseToken)
	}
	ld, tokD := cg.g.NewLaunch("alice", cg.uids["alice"])
	cg.submit(ctx, t, "bob", "h1", ld.ID) // bob's job claims alice's launch id
	if _, err := cg.dialer("h1", ld.ID, tokD, "alice").Dial(ctx); refusedCode(err) != gateway.RefuseJob {
		t.Errorf("launch whose job runs as bob: %v, want refusal %q", err, gateway.RefuseJob)
	}

	// The real agent of launch c: admitted, and its link is alice's.
	d := cg.dialer("h2", lc.ID, tokC, "alice")
	agentEnd, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("admit alice's agent: %v", err)
	}
	link, err := cg.g.Take(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := gateway.Identity{User: "alice", UID: cg.uids["alice"], LaunchID: lc.ID, Node: "h2"}
	if got := link.Identity; got.User != want.User || got.UID != want.UID || got.LaunchID != want.LaunchID || got.Node != want.Node || got.JobID == "" {
		t.Errorf("link identity = %+v, want %+v with a job id", got, want)
	}
	if cg.g.Connected("bob") {
		t.Error("a link is parked for bob")
	}
	// Bytes cross the link both ways.
	go agentEnd.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(link.Conn, buf); err != nil || string(buf) != "ping" {
		t.Errorf("read from link = %q, %v; want ping", buf, err)
	}
	link.Conn.Close()
	agentEnd.Close()

	// Reconnect with the issued certificate (no token, no MUNGE): admitted
	// from the job's node, refused from another.
	if _, err := d.Dial(ctx); err != nil {
		t.Fatalf("certificate reconnect: %v", err)
	}
	if l, err := cg.g.Take(ctx, "alice"); err != nil || l.LaunchID != lc.ID {
		t.Fatalf("reconnected link = %+v, %v", l, err)
	} else {
		l.Conn.Close()
	}
	// A parked link whose agent hangs up is dropped, never handed out.
	gone, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("certificate reconnect: %v", err)
	}
	for !cg.g.Connected("alice") {
		time.Sleep(10 * time.Millisecond)
	}
	gone.Close()
	for cg.g.Connected("alice") {
		time.Sleep(10 * time.Millisecond)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	if l, err := cg.g.Take(short, "alice"); err == nil {
		t.Errorf("Take after the parked agent hung up = %+v, want a timeout", l.Identity)
	}
	cancelShort()
	stolen := cg.dialer("h1", lc.ID, "", "alice") // alice's key and certificate, used from h1
	gateway.CopyIdentity(stolen, d)
	if _, err := stolen.Dial(ctx); refusedCode(err) != gateway.RefuseNode {
		t.Errorf("certificate used from another node: %v, want refusal %q", err, gateway.RefuseNode)
	}
	// The certificate names launch c: it cannot claim launch a.
	claim := cg.dialer("h2", la.ID, "", "alice")
	gateway.CopyIdentity(claim, d)
	if _, err := claim.Dial(ctx); refusedCode(err) != gateway.RefuseCert {
		t.Errorf("certificate of launch c claiming launch a: %v, want refusal %q", err, gateway.RefuseCert)
	}
	// An agent pinning another CA refuses the gateway.
	pinned := cg.dialer("h2", lc.ID, tokC, "alice")
	pinned.CASHA256 = strings.Repeat("0", 64)
	if _, err := pinned.Dial(ctx); err == nil || refusedCode(err) != "" {
		t.Errorf("agent pinning another CA: %v, want a TLS error", err)
	}
}
