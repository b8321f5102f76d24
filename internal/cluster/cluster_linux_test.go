package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"octo/e2e/slurmbox"
	"octo/internal/agentrpc"
	"octo/internal/backend"
	"octo/internal/cluster"
	"octo/internal/config"
	"octo/internal/slurm"
)

// controlPlane is the slurm backend as octo serve builds it, against the
// real cluster: a gateway, a placer and a pool routing by placement. sbatch
// and scancel run as the user in the box (octo serve runs them through the
// user's local agent: AgentRunner).
type controlPlane struct {
	g      *slurmbox.Gateway
	placer *cluster.Placer
	router *backend.Router
	pool   *backend.Pool
}

var discard = slog.New(slog.DiscardHandler)

// startControlPlaneTB is startControlPlane for benchmarks: quiet logs.
func startControlPlaneTB(t testing.TB, c *slurmbox.Cluster) *controlPlane {
	return startControlPlane(t, c, t.TempDir(), slurmbox.CtlAddr+":0", func(cfg *cluster.Config) {
		cfg.Log = discard
		cfg.Spec.Agent = slurmbox.DialPath + " --idle-timeout 10m"
	})
}

func startControlPlane(t testing.TB, c *slurmbox.Cluster, caDir, addr string, tweak func(*cluster.Config)) *controlPlane {
	t.Helper()
	g := slurmbox.RunGateway(t, c, caDir, addr)
	cfg := cluster.Config{
		Gateway: g.Gateway, Advertise: g.Addr, Queue: c.Runner(""),
		AsUser:        func(u backend.User, env map[string]string) slurm.Runner { return c.RunnerEnv(u.Name, env) },
		Spec:          slurm.Spec{Agent: slurmbox.DialPath + " --idle-timeout 4s", TimeLimit: 5 * time.Minute},
		LaunchTimeout: time.Minute, RequestWait: 30 * time.Second,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	placer, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	router, err := backend.NewRouter(backend.RouterConfig{Mode: config.ModeSlurm, Slurm: placer})
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{g: g, placer: placer, router: router, pool: backend.NewPool(router, 5*time.Second, cfg.Log)}
	t.Cleanup(cp.stop)
	return cp
}

// stop is what an octo restart does to the backend.
func (cp *controlPlane) stop() {
	cp.pool.Close()
	cp.g.Stop()
}

func (cp *controlPlane) user(name string) backend.User {
	return backend.User{Name: name, UID: cp.g.UIDs[name], Home: "/home/" + name}
}

func (cp *controlPlane) info(ctx context.Context, t *testing.T, name string) (agentrpc.Info, backend.Endpoint) {
	t.Helper()
	var info agentrpc.Info
	ep, err := cp.pool.Do(ctx, cp.user(name), backend.Repeatable, func(c *agentrpc.Client) (err error) {
		info, err = c.Info(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("Info for %s: %v", name, err)
	}
	return info, ep
}

func agentJobs(ctx context.Context, t testing.TB, c *slurmbox.Cluster, user string) []slurm.Job {
	t.Helper()
	jobs, err := slurm.Queue(ctx, c.Runner(""), user)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestPlacement: two first requests of alice give one job on h1 or h2, and
// a session there runs on that node as alice; after a control plane
// restart the same job is re-adopted; when its agent idles out the job
// ends and the next request submits another.
func TestPlacement(t *testing.T) {
	c := slurmbox.Start(t, "alice", "bob")
	c.InstallAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	caDir := t.TempDir()
	cp := startControlPlane(t, c, caDir, slurmbox.CtlAddr+":0", nil)

	var wg sync.WaitGroup
	eps := make([]backend.Endpoint, 2)
	for i := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, eps[i] = cp.info(ctx, t, "alice")
		}()
	}
	wg.Wait()
	if eps[0].Job == nil || eps[1].Job == nil || eps[0].Job.ID != eps[1].Job.ID {
		t.Fatalf("two first requests: jobs %+v and %+v, want one", eps[0].Job, eps[1].Job)
	}
	job := *eps[0].Job
	if eps[0].Placement != backend.PlacementSlurm || !slices.Contains(slurmbox.Nodes, job.Node) {
		t.Errorf("endpoint = %+v job %+v, want placement slurm on h1 or h2", eps[0], job)
	}
	if jobs := agentJobs(ctx, t, c, "alice"); len(jobs) != 1 || jobs[0].ID != job.ID {
		t.Errorf("alice's agent jobs = %+v, want just %s", jobs, job.ID)
	}
	if out := runSession(ctx, t, cp, "alice", "hostname; id -un"); out != job.Node+"\nalice\n" {
		t.Errorf("session printed %q, want %q", out, job.Node+"\nalice\n")
	}
	bobInfo, bobEp := cp.info(ctx, t, "bob")
	if bobInfo.User != "bob" || bobEp.Job.ID == job.ID {
		t.Errorf("bob's agent: info user %q, job %+v; want bob's own", bobInfo.User, bobEp.Job)
	}

	// Restart while the Slurm controller is down too: requests get 503
	// (Slurm does not answer), the agent keeps trying; once the controller
	// is back, a new control plane (same CA, same address) has the running
	// job back, its agent reconnected with its certificate.
	// A running session keeps the agent (and its job) alive through the
	// outage: an idle agent that cannot reach octo ends itself.
	var sess agentrpc.Session
	if _, err := cp.pool.Do(ctx, cp.user("alice"), backend.Once, func(cl *agentrpc.Client) (err error) {
		sess, err = cl.Start(ctx, agentrpc.StartRequest{Argv: []string{"sleep", "300"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	addr := cp.g.Addr
	if err := c.StopDaemon(ctx, "ctl"); err != nil {
		t.Fatal(err)
	}
	cp.stop()
	cp = startControlPlane(t, c, caDir, addr, nil)
	_, err := cp.pool.Do(ctx, cp.user("alice"), backend.Repeatable, func(*agentrpc.Client) error { return nil })
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeUnavailable {
		t.Errorf("request while slurmctld is down = %v, want %s", err, backend.CodeUnavailable)
	}
	time.Sleep(2 * time.Second) // the agent's reconnects are refused meanwhile (verify), not for good
	if err := c.StartDaemon(ctx, "ctl"); err != nil {
		t.Fatal(err)
	}
	for {
		err := cp.placer.Adopt(ctx, func(name string) (uint32, error) { return cp.g.UIDs[name], nil })
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("slurmctld never answered again: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	info, ep := cp.info(ctx, t, "alice")
	if info.User != "alice" || ep.Job.ID != job.ID || info.RunningSessions != 1 {
		t.Errorf("after restart: user %q job %+v, %d running sessions; want alice's job %s re-adopted, its session running",
			info.User, ep.Job, info.RunningSessions, job.ID)
	}
	if _, err := cp.pool.Do(ctx, cp.user("alice"), backend.Once, func(cl *agentrpc.Client) error {
		_, err := cl.Stop(ctx, agentrpc.StopRequest{ID: sess.ID})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Idle exit: no request for the agent's 4s idle timeout, no session
	// running: the job ends, and the next request submits another.
	waitNoJobs(ctx, t, c, "alice")
	_, ep = cp.info(ctx, t, "alice")
	if ep.Job.ID == job.ID {
		t.Errorf("after the idle exit the request was served by job %s again, want a new job", ep.Job.ID)
	}
}

func waitNoJobs(ctx context.Context, t *testing.T, c *slurmbox.Cluster, user string) {
	t.Helper()
	waitNoJobsTB(ctx, t, c, user)
}

func waitNoJobsTB(ctx context.Context, t testing.TB, c *slurmbox.Cluster, user string) {
	t.Helper()
	for len(agentJobs(ctx, t, c, user)) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%s's agent jobs never ended: %+v", user, agentJobs(context.Background(), t, c, user))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func runSession(ctx context.Context, t *testing.T, cp *controlPlane, user, script string) string {
	t.Helper()
	var sess agentrpc.Session
	if _, err := cp.pool.Do(ctx, cp.user(user), backend.Once, func(c *agentrpc.Client) (err error) {
		sess, err = c.Start(ctx, agentrpc.StartRequest{Argv: []string{"sh", "-c", script}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for {
		var o agentrpc.Output
		if _, err := cp.pool.Do(ctx, cp.user(user), backend.Repeatable, func(c *agentrpc.Client) (err error) {
			o, err = c.ReadOutput(ctx, agentrpc.OutputRequest{ID: sess.ID, Offset: int64(len(out)), Wait: 5 * time.Second})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Data...)
		if o.Done {
			return string(out)
		}
	}
}

// TestPendingThenCancelled: a job Slurm holds is reported with its reason
// (503), and cancelled once the launch timeout passes without its agent.
func TestPendingThenCancelled(t *testing.T) {
	c := slurmbox.Start(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp := startControlPlane(t, c, t.TempDir(), slurmbox.CtlAddr+":0", func(cfg *cluster.Config) {
		cfg.Spec.Extra = []string{"--begin=now+3600"}
		cfg.RequestWait = time.Second
		cfg.LaunchTimeout = 3 * time.Second
	})
	_, err := cp.pool.Do(ctx, cp.user("alice"), backend.Repeatable, func(c *agentrpc.Client) error { return nil })
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeUnavailable || !strings.Contains(be.Message, "pending") || !strings.Contains(be.Message, "BeginTime") {
		t.Fatalf("request while the job is held = %v, want %s saying pending (reason: BeginTime)", err, backend.CodeUnavailable)
	}
	if jobs := agentJobs(ctx, t, c, "alice"); len(jobs) != 1 {
		t.Fatalf("alice's jobs = %+v, want the held one", jobs)
	}
	waitNoJobs(ctx, t, c, "alice")

	// A job still pending when octo restarts can never be admitted (its
	// token died with that octo): the new octo cancels it.
	cp.stop()
	held := func(cfg *cluster.Config) {
		cfg.Spec.Extra = []string{"--begin=now+3600"}
		cfg.RequestWait = time.Second
		cfg.LaunchTimeout = time.Hour
	}
	cp = startControlPlane(t, c, t.TempDir(), slurmbox.CtlAddr+":0", held)
	cp.pool.Do(ctx, cp.user("alice"), backend.Repeatable, func(c *agentrpc.Client) error { return nil })
	if jobs := agentJobs(ctx, t, c, "alice"); len(jobs) != 1 {
		t.Fatalf("alice's jobs = %+v, want the held one", jobs)
	}
	cp.stop()
	cp = startControlPlane(t, c, t.TempDir(), slurmbox.CtlAddr+":0", held)
	if err := cp.placer.Adopt(ctx, func(name string) (uint32, error) { return cp.g.UIDs[name], nil }); err != nil {
		t.Fatal(err)
	}
	waitNoJobs(ctx, t, c, "alice")
}
