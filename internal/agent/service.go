package agent

import "octo/internal/agentrpc"

// AgentService is the Agent net/rpc service.
type AgentService struct{ c *call }

// Info describes the agent and its user.
func (a *AgentService) Info(_ *agentrpc.Empty, reply *agentrpc.Info) error {
	return a.c.do(func() error {
		*reply = a.c.s.Info()
		return nil
	})
}
