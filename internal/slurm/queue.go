package slurm

import (
	"context"
	"fmt"
	"strings"
)

// Job states octo branches on (squeue %T).
const (
	StatePending    = "PENDING"
	StateRunning    = "RUNNING"
	StateCompleting = "COMPLETING"
)

// Job is one agent job as squeue reports it.
type Job struct {
	ID       string
	User     string
	State    string
	Node     string // the node it runs on; "" while pending
	Reason   string // why it is pending ("None" otherwise)
	LaunchID string // from the comment; "" if the comment is not octo's
}

// queueFormat: fields separated by '|', the comment last (it may hold anything).
const queueFormat = "%i|%u|%T|%N|%r|%k"

// QueueArgs lists octo's agent jobs, of user when not empty.
func QueueArgs(user string) []string {
	args := []string{"squeue", "--noheader", "--name=" + JobName, "--format=" + queueFormat}
	if user != "" {
		args = append(args, "--user="+user)
	}
	return args
}

// ParseQueue reads squeue output in queueFormat.
func ParseQueue(out []byte) ([]Job, error) {
	var jobs []Job
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, "|", 6)
		if len(f) != 6 {
			return nil, fmt.Errorf("squeue line %q: want 6 fields", line)
		}
		j := Job{ID: strings.TrimSpace(f[0]), User: f[1], State: f[2], Node: f[3], Reason: f[4]}
		if j.Node == "(null)" {
			j.Node = ""
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(f[5]), CommentPrefix); ok {
			j.LaunchID = id
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// Queue lists octo's agent jobs (of user, when not empty) with r.
func Queue(ctx context.Context, r Runner, user string) ([]Job, error) {
	out, err := r.Run(ctx, nil, QueueArgs(user)...)
	if err != nil {
		return nil, fmt.Errorf("list agent jobs: %w", err)
	}
	return ParseQueue(out)
}

// FindJob returns the job with id, and false if squeue no longer lists it.
func FindJob(ctx context.Context, r Runner, id string) (Job, bool, error) {
	out, err := r.Run(ctx, nil, "squeue", "--noheader", "--jobs="+id, "--format="+queueFormat)
	if err != nil {
		// squeue fails for a job id it has forgotten.
		if re, ok := err.(*RunError); ok && strings.Contains(re.Stderr, "Invalid job id") {
			return Job{}, false, nil
		}
		return Job{}, false, fmt.Errorf("look up job %s: %w", id, err)
	}
	jobs, err := ParseQueue(out)
	if err != nil {
		return Job{}, false, err
	}
	for _, j := range jobs {
		if j.ID == id {
			return j, true, nil
		}
	}
	return Job{}, false, nil
}

// NodeAddrs maps each node name to its address (sinfo %o, NodeAddr).
func NodeAddrs(ctx context.Context, r Runner) (map[string]string, error) {
	out, err := r.Run(ctx, nil, "sinfo", "--noheader", "--Node", "--format=%N|%o")
	if err != nil {
		return nil, fmt.Errorf("list node addresses: %w", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		name, addr, ok := strings.Cut(strings.TrimSpace(line), "|")
		if ok && name != "" && addr != "" {
			m[name] = addr
		}
	}
	return m, nil
}

// CancelArgs cancels job id (run as the job's user).
func CancelArgs(id string) []string { return []string{"scancel", id} }
