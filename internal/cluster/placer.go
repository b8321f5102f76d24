// Package cluster places each user's agent as a Slurm job, submitted as the
// user through the user's local agent, and hands the control plane the
// link its agent dials back on, verified by the gateway. It implements
// backend.SlurmPlacer.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"octo/internal/backend"
	"octo/internal/gateway"
	"octo/internal/slurm"
)

// Config configures a Placer.
type Config struct {
	Gateway   *gateway.Gateway
	Advertise string // host:port agents dial
	// Queue runs octo's own squeue (any user may list jobs).
	Queue slurm.Runner
	// AsUser runs sbatch and scancel as u with env added: a session of u's
	// local agent (AgentRunner) in production.
	AsUser func(u backend.User, env map[string]string) slurm.Runner
	// Spec is the submission template; LaunchID is filled per launch.
	Spec slurm.Spec
	// SlurmConf, when set, is passed to sbatch and scancel as SLURM_CONF.
	SlurmConf     string
	LaunchTimeout time.Duration // cancel a job whose agent has not connected by then
	RequestWait   time.Duration // a request waits this long for the agent
	Log           *slog.Logger
}

// Placer implements backend.SlurmPlacer.
type Placer struct {
	cfg   Config
	links links
}

// New returns a placer.
func New(cfg Config) (*Placer, error) {
	if cfg.Gateway == nil || cfg.Queue == nil || cfg.AsUser == nil || cfg.Spec.Agent == "" {
		return nil, errors.New("cluster: config needs a gateway, a queue runner, AsUser and an agent command")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Placer{cfg: cfg}, nil
}

// Link implements backend.SlurmPlacer. The pool calls it for one user at
// a time, so two first requests submit one job.
func (p *Placer) Link(ctx context.Context, u backend.User) (net.Conn, backend.Job, error) {
	if l := p.cfg.Gateway.TryTake(u.Name); l != nil {
		return p.checked(l, u)
	}
	jobs, err := slurm.Queue(ctx, p.cfg.Queue, u.Name)
	if err != nil {
		return nil, backend.Job{}, unavailable(fmt.Sprintf("cannot ask Slurm for %s's agent job", u.Name), err)
	}
	job, live := liveJob(jobs)
	if !live {
		if job, err = p.submit(ctx, u); err != nil {
			return nil, backend.Job{}, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.RequestWait)
	l, err := p.cfg.Gateway.Take(wctx, u.Name)
	cancel()
	if err == nil {
		return p.checked(l, u)
	}
	return nil, backend.Job{}, p.notConnected(ctx, u, job)
}

// liveJob picks the job an agent will come from: running first, else pending.
func liveJob(jobs []slurm.Job) (slurm.Job, bool) {
	var pending *slurm.Job
	for i, j := range jobs {
		if j.LaunchID == "" {
			continue
		}
		switch j.State {
		case slurm.StateRunning:
			return j, true
		case slurm.StatePending, "CONFIGURING":
			pending = &jobs[i]
		}
	}
	if pending != nil {
		return *pending, true
	}
	return slurm.Job{}, false
}

// checked returns l if the gateway proved it is u's agent.
func (p *Placer) checked(l *gateway.Link, u backend.User) (net.Conn, backend.Job, error) {
	if l.User != u.Name || l.UID != u.UID {
		l.Conn.Close()
		return nil, backend.Job{}, unavailable(fmt.Sprintf("the agent link for %s was proven for %s (uid %d); refused", u.Name, l.User, l.UID), nil)
	}
	p.links.add(u.Name, l.Conn, l.JobID)
	return l.Conn, backend.Job{ID: l.JobID, Node: l.Node, State: slurm.StateRunning}, nil
}

// submit launches u's agent: a launch (token) at the gateway, sbatch as u.
func (p *Placer) submit(ctx context.Context, u backend.User) (slurm.Job, error) {
	launch, token := p.cfg.Gateway.NewLaunch(u.Name, u.UID)
	spec := p.cfg.Spec
	spec.LaunchID = launch.ID
	args, err := slurm.SbatchArgs(spec)
	if err != nil {
		p.cfg.Gateway.Forget(launch.ID)
		return slurm.Job{}, err
	}
	env := map[string]string{slurm.EnvGateway: p.cfg.Advertise, slurm.EnvLaunch: launch.ID,
		slurm.EnvToken: token, slurm.EnvCASHA256: p.cfg.Gateway.Fingerprint()}
	if p.cfg.SlurmConf != "" {
		env["SLURM_CONF"] = p.cfg.SlurmConf
	}
	out, err := p.cfg.AsUser(u, env).Run(ctx, nil, args...)
	if err != nil {
		p.cfg.Gateway.Forget(launch.ID)
		var be *backend.Error
		if errors.As(err, &be) {
			return slurm.Job{}, &backend.Error{Code: be.Code, Message: "submit " + u.Name + "'s agent job through the local agent: " + be.Message, Err: be.Err}
		}
		return slurm.Job{}, &backend.Error{Code: backend.CodeFailed, Message: fmt.Sprintf("sbatch as %s failed", u.Name), Err: err}
	}
	id, err := slurm.ParseJobID(out)
	if err != nil {
		p.cfg.Gateway.Forget(launch.ID)
		return slurm.Job{}, &backend.Error{Code: backend.CodeFailed, Message: "sbatch as " + u.Name, Err: err}
	}
	p.cfg.Gateway.SetJob(launch.ID, id)
	p.cfg.Log.Info("agent job submitted", "user", u.Name, "job", id, "launch", launch.ID)
	time.AfterFunc(p.cfg.LaunchTimeout, func() { p.expire(u, launch.ID, id) })
	return slurm.Job{ID: id, User: u.Name, State: slurm.StatePending, LaunchID: launch.ID}, nil
}

// expire cancels a launch's job if its agent never connected.
func (p *Placer) expire(u backend.User, launchID, jobID string) {
	l, ok := p.cfg.Gateway.Launch(launchID)
	if !ok || l.Admitted {
		return
	}
	p.cfg.Gateway.Forget(launchID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.cfg.AsUser(u, p.slurmEnv()).Run(ctx, nil, slurm.CancelArgs(jobID)...)
	p.cfg.Log.Warn("agent job cancelled: its agent did not connect in time", "user", u.Name, "job", jobID,
		"launch_timeout", p.cfg.LaunchTimeout.String(), "cancel_err", err)
}

func (p *Placer) slurmEnv() map[string]string {
	if p.cfg.SlurmConf == "" {
		return nil
	}
	return map[string]string{"SLURM_CONF": p.cfg.SlurmConf}
}

// notConnected says why u's agent is not there yet, from the job's state.
func (p *Placer) notConnected(ctx context.Context, u backend.User, job slurm.Job) error {
	cur, ok, err := slurm.FindJob(ctx, p.cfg.Queue, job.ID)
	switch {
	case err != nil:
		return unavailable(fmt.Sprintf("%s's agent (Slurm job %s) has not connected, and Slurm does not answer", u.Name, job.ID), err)
	case !ok || (cur.State != slurm.StatePending && cur.State != slurm.StateRunning && cur.State != "CONFIGURING"):
		state := "gone"
		if ok {
			state = cur.State
		}
		return &backend.Error{Code: backend.CodeFailed, Message: fmt.Sprintf(
			"%s's agent job %s ended (%s) before its agent connected; the next request submits another", u.Name, job.ID, state)}
	case cur.State == slurm.StateRunning:
		return unavailable(fmt.Sprintf("%s's agent job %s runs on %s but its agent has not connected yet; retry in a moment", u.Name, cur.ID, cur.Node), nil)
	}
	return unavailable(fmt.Sprintf("%s's agent job %s is pending in Slurm (reason: %s); retry in a moment", u.Name, cur.ID, strings.TrimSpace(cur.Reason)), nil)
}

func unavailable(msg string, err error) *backend.Error {
	return &backend.Error{Code: backend.CodeUnavailable, Message: msg, Err: err}
}

// Adopt, run once at start, records the agent jobs a previous octo left
// running (their agents reconnect with their certificates, keeping their
// job ids), and cancels the ones still pending: their launch tokens died
// with that octo, so their agents could never be admitted, and they would
// hold back (singleton) their users' next jobs. lookup gives a user's uid.
func (p *Placer) Adopt(ctx context.Context, lookup func(name string) (uint32, error)) error {
	jobs, err := slurm.Queue(ctx, p.cfg.Queue, "")
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.LaunchID == "" {
			continue
		}
		uid, err := lookup(j.User)
		if err != nil {
			p.cfg.Log.Warn("agent job of an unknown user left alone", "job", j.ID, "user", j.User, "err", err)
			continue
		}
		switch j.State {
		case slurm.StateRunning:
			p.cfg.Gateway.Adopt(j.LaunchID, j.User, uid, j.ID)
			p.cfg.Log.Info("agent job adopted", "user", j.User, "job", j.ID, "node", j.Node, "launch", j.LaunchID)
		case slurm.StatePending:
			go p.cancelStale(backend.User{Name: j.User, UID: uid}, j.ID)
		}
	}
	return nil
}

func (p *Placer) cancelStale(u backend.User, jobID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.cfg.AsUser(u, p.slurmEnv()).Run(ctx, nil, slurm.CancelArgs(jobID)...)
	p.cfg.Log.Info("pending agent job of a previous octo cancelled", "user", u.Name, "job", jobID, "cancel_err", err)
}
