package agent

import (
	"octo/internal/agent/session"
	"octo/internal/agentrpc"
)

// SessionService is the Session net/rpc service: thin adapters from the
// protocol to the session Manager.
type SessionService struct{ c *call }

func (ss *SessionService) get(id string) (*session.Session, error) {
	return ss.c.s.sess.Get(id)
}

// Start starts a session in a directory of the workspace.
func (ss *SessionService) Start(req *agentrpc.StartRequest, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		cwd, err := cleanRel(req.Cwd)
		if err != nil {
			return err
		}
		dir, err := ss.c.s.root.Open(cwd)
		if err != nil {
			return fileErr("start: cwd", cwd, err)
		}
		defer dir.Close()
		rec, err := ss.c.s.sess.Start(req, session.Cwd{Dir: dir, Rel: cwd}, *ss.c.cred)
		if err != nil {
			return err
		}
		*reply = rec
		return nil
	})
}

// List lists every session, oldest first.
func (ss *SessionService) List(_ *agentrpc.Empty, reply *agentrpc.SessionList) error {
	return ss.c.do(func() error {
		reply.Sessions = ss.c.s.sess.List()
		return nil
	})
}

// Get returns one session's record.
func (ss *SessionService) Get(req *agentrpc.SessionRef, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		*reply = ses.Snapshot()
		return nil
	})
}

// Stop ends the session's process group (SIGTERM, SIGKILL after the grace)
// and returns the record once it has ended.
func (ss *SessionService) Stop(req *agentrpc.StopRequest, reply *agentrpc.Session) error {
	return ss.c.do(func() error {
		rec, err := ss.c.s.sess.Stop(req.ID, req.Grace)
		if err != nil {
			return err
		}
		*reply = rec
		return nil
	})
}

// Signal sends a signal to the session's process group.
func (ss *SessionService) Signal(req *agentrpc.SignalRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		return ses.Signal(req.Signal)
	})
}

// Resize changes a tty session's terminal size.
func (ss *SessionService) Resize(req *agentrpc.ResizeRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		return ses.Resize(req.Rows, req.Cols)
	})
}

// WriteInput writes to the session's standard input.
func (ss *SessionService) WriteInput(req *agentrpc.InputRequest, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		return ses.WriteInput(req.Data)
	})
}

// CloseInput closes the session's standard input (a tty gets ^D).
func (ss *SessionService) CloseInput(req *agentrpc.SessionRef, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		return ses.CloseInput()
	})
}

// ReadOutput reads the session's output from an offset, waiting for more
// if asked.
func (ss *SessionService) ReadOutput(req *agentrpc.OutputRequest, reply *agentrpc.Output) error {
	return ss.c.do(func() error {
		ses, err := ss.get(req.ID)
		if err != nil {
			return err
		}
		out, err := ses.Read(req)
		if err != nil {
			return err
		}
		*reply = out
		return nil
	})
}

// Remove deletes a finished session's record and output.
func (ss *SessionService) Remove(req *agentrpc.SessionRef, _ *agentrpc.Empty) error {
	return ss.c.do(func() error {
		return ss.c.s.sess.Remove(req.ID)
	})
}
