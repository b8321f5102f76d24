package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	"octo/internal/slurm"
)

// admit decides whether the agent on c is who it claims, and signs its
// certificate request. A first connection presents its launch's token and
// a MUNGE credential; a reconnect presents the client certificate it got.
// Either way the launch's job must be RUNNING as the launch's user on the
// node whose address the connection comes from.
func (g *Gateway) admit(ctx context.Context, c *tls.Conn, h hello) (Identity, []byte, error) {
	var l Launch
	peers := c.ConnectionState().PeerCertificates
	bootstrap := len(peers) == 0
	if bootstrap {
		var err error
		if l, err = g.launches.redeem(h.Launch, h.Token); err != nil {
			return Identity{}, nil, err
		}
	} else {
		user, launch, ok := certIdentity(peers[0])
		if !ok || launch != h.Launch {
			return Identity{}, nil, refuse(RefuseCert, "the client certificate does not name this launch")
		}
		var known bool
		if l, known = g.launches.get(launch); known && l.User != user {
			return Identity{}, nil, refuse(RefuseCert, "the client certificate names another user than the launch's")
		}
		if !known {
			uid, err := g.cfg.LookupUID(user)
			if err != nil {
				return Identity{}, nil, refuse(RefuseCert, fmt.Sprintf("user %q: %v", user, err))
			}
			l = Launch{ID: launch, User: user, UID: uid}
		}
	}
	job, err := g.runningJob(ctx, l)
	if err != nil {
		return Identity{}, nil, err
	}
	if err := g.fromNode(ctx, c, job.Node); err != nil {
		return Identity{}, nil, err
	}
	if bootstrap {
		uid, err := g.cfg.Verifier.Unmunge(ctx, []byte(h.Munge))
		if err != nil {
			return Identity{}, nil, refuse(RefuseMunge, err.Error())
		}
		if uid != l.UID {
			return Identity{}, nil, refuse(RefuseMunge, fmt.Sprintf("MUNGE credential of uid %d, the launch is uid %d's", uid, l.UID))
		}
	}
	csr, err := x509.ParseCertificateRequest(h.CSR)
	if err != nil {
		return Identity{}, nil, refuse(RefuseCSR, err.Error())
	}
	cert, err := g.cfg.CA.ClientCert(csr, l.User, l.ID, g.cfg.CertTTL)
	if err != nil {
		return Identity{}, nil, refuse(RefuseCSR, err.Error())
	}
	if !bootstrap {
		g.launches.adopt(l.ID, l.User, l.UID, job.ID)
	}
	g.launches.admit(l.ID, job.ID)
	return Identity{User: l.User, UID: l.UID, LaunchID: l.ID, JobID: job.ID, Node: job.Node}, cert, nil
}

// runningJob finds l's job in squeue: RUNNING, as l's user, with l's id in
// its comment (and the job id recorded at submission, if any).
func (g *Gateway) runningJob(ctx context.Context, l Launch) (slurm.Job, error) {
	jobs, err := g.cfg.Verifier.Jobs(ctx, l.User)
	if err != nil {
		return slurm.Job{}, refuse(RefuseCheck, err.Error())
	}
	for _, j := range jobs {
		if j.LaunchID != l.ID {
			continue
		}
		switch {
		case j.User != l.User:
			return slurm.Job{}, refuse(RefuseJob, fmt.Sprintf("job %s runs as %s, the launch is %s's", j.ID, j.User, l.User))
		case l.JobID != "" && j.ID != l.JobID:
			return slurm.Job{}, refuse(RefuseJob, fmt.Sprintf("job %s is not the launch's job %s", j.ID, l.JobID))
		case j.State != slurm.StateRunning || j.Node == "":
			return slurm.Job{}, refuse(RefuseJob, fmt.Sprintf("job %s is %s, not RUNNING", j.ID, j.State))
		}
		return j, nil
	}
	return slurm.Job{}, refuse(RefuseJob, fmt.Sprintf("no job of %s carries launch %s", l.User, l.ID))
}

// fromNode checks that c comes from node's address.
func (g *Gateway) fromNode(ctx context.Context, c net.Conn, node string) error {
	remote, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return refuse(RefuseNode, "not a TCP connection")
	}
	addrs, err := g.cfg.Verifier.NodeAddrs(ctx)
	if err != nil {
		return refuse(RefuseCheck, err.Error())
	}
	addr := addrs[node]
	if addr == "" {
		return refuse(RefuseNode, fmt.Sprintf("node %s has no address in sinfo", node))
	}
	ips := []string{addr}
	if net.ParseIP(addr) == nil {
		if ips, err = net.DefaultResolver.LookupHost(ctx, addr); err != nil {
			return refuse(RefuseCheck, fmt.Sprintf("resolve node %s: %v", node, err))
		}
	}
	for _, ip := range ips {
		if p := net.ParseIP(ip); p != nil && p.Equal(remote.IP) {
			return nil
		}
	}
	return refuse(RefuseNode, fmt.Sprintf("connection from %s, but the job runs on %s (%s)", remote.IP, node, addr))
}
