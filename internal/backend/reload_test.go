package backend

import (
	"context"
	"sync/atomic"
	"testing"

	"octo/internal/agentrpc"
)

// ReloadingAgent refuses the first Refuse calls of Session.Start with code
// reloading, as an agent handing over to a new binary does, then runs them.
type ReloadingAgent struct {
	Refuse int32
	calls  atomic.Int32
	ran    atomic.Int32
}

func (a *ReloadingAgent) Start(_ *agentrpc.StartRequest, r *agentrpc.Session) error {
	if a.calls.Add(1) <= a.Refuse {
		return agentrpc.Encode(agentrpc.Errorf(agentrpc.CodeReloading, "reloading; repeat it"))
	}
	a.ran.Add(1)
	r.ID = "0123456789abcdef"
	return nil
}

// A call the agent refused with code reloading did not run: the pool
// repeats it, even one not safe to repeat, on a new connection.
func TestPoolRepeatsCallsRefusedByReload(t *testing.T) {
	dir := t.TempDir()
	u := me(t)
	a := &ReloadingAgent{Refuse: 2}
	accepted := serveFakeAgent(t, dir, u, "Session", a)
	p := localPool(t, dir)
	ctx := context.Background()
	var s agentrpc.Session
	_, err := p.Do(ctx, u, Once, func(c *agentrpc.Client) (err error) {
		s, err = c.Start(ctx, agentrpc.StartRequest{Argv: []string{"true"}})
		return err
	})
	if err != nil || s.ID == "" {
		t.Fatalf("Start refused twice by a reload: %+v, %v; want it repeated until it ran", s, err)
	}
	if a.ran.Load() != 1 || accepted.Load() != 3 {
		t.Errorf("ran %d times over %d connections, want once over 3 (a new one after each refusal)", a.ran.Load(), accepted.Load())
	}
}
