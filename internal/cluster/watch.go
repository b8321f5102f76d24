package cluster

import (
	"context"
	"net"
	"sync"
	"time"

	"octo/internal/slurm"
)

// links are the agent links the placer handed out, by user, so that a link
// whose job Slurm no longer runs is closed: Slurm has given the node's
// resources back (time limit, cancel, node failure), and whatever still
// answers there is no longer the user's placed agent.
type links struct {
	mu sync.Mutex
	m  map[string]heldLink
}

type heldLink struct {
	conn  net.Conn
	jobID string
}

func (ls *links) add(user string, c net.Conn, jobID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = map[string]heldLink{}
	}
	ls.m[user] = heldLink{c, jobID}
}

// Watch checks every interval, until ctx ends, that each handed-out link's
// job is still RUNNING, and closes the links of jobs that are not; and
// forgets the launches of jobs that ended.
func (p *Placer) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.check(ctx)
	}
}

// check closes the links whose job no longer runs, and forgets the
// launches whose job squeue no longer lists.
func (p *Placer) check(ctx context.Context) {
	jobs, err := slurm.Queue(ctx, p.cfg.Queue, "")
	if err != nil {
		p.cfg.Log.Warn("agent jobs not checked: squeue failed", "err", err)
		return
	}
	running, listed := map[string]bool{}, map[string]bool{}
	for _, j := range jobs {
		listed[j.ID] = true
		if j.State == slurm.StateRunning {
			running[j.ID] = true
		}
	}
	p.cfg.Gateway.PruneLaunches(func(id string) bool { return listed[id] })
	p.links.mu.Lock()
	defer p.links.mu.Unlock()
	for user, l := range p.links.m {
		if !running[l.jobID] {
			l.conn.Close()
			delete(p.links.m, user)
			p.cfg.Log.Warn("agent link closed: its job is no longer running", "user", user, "job", l.jobID)
		}
	}
}
