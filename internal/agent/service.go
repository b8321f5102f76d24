package agent

import "octo/internal/agentrpc"

// AgentService is the Agent net/rpc service.
type AgentService struct{ c *call }

// Info describes the agent and its user.
func (a *AgentService) Info(_ *agentrpc.Empty, reply *agentrpc.Info) error {
	end, err := a.c.begin()
	if err != nil {
		return err
	}
	defer end()
	*reply = a.c.s.Info()
	return nil
}
