package backend

import (
	"context"
	"errors"
	"net"
)

// SlurmPlacer places users' agents as Slurm jobs. The cluster package
// implements it; the router calls it for backend.mode "slurm".
type SlurmPlacer interface {
	// Link returns the verified connection of u's agent (which the caller
	// then owns) and its job, submitting a job when u has none. Its errors
	// are *Error values.
	Link(ctx context.Context, u User) (net.Conn, Job, error)
}

func (r *Router) slurm(ctx context.Context, u User) (Endpoint, error) {
	link, job, err := r.cfg.Slurm.Link(ctx, u)
	if err != nil {
		var be *Error
		if errors.As(err, &be) {
			return Endpoint{}, err
		}
		return Endpoint{}, &Error{Code: CodeFailed, Message: "place agent for " + u.Name + " with Slurm", Err: err}
	}
	return Endpoint{Placement: PlacementSlurm, Link: link, Job: &job}, nil
}
