package slurm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Job environment: the submitting session sets these and sbatch exports
// them (by name, so the values never appear in a command line).
const (
	EnvGateway  = "OCTO_GATEWAY"      // host:port the agent dials
	EnvLaunch   = "OCTO_LAUNCH_ID"    // the launch this job is
	EnvToken    = "OCTO_LAUNCH_TOKEN" // single-use bootstrap token
	EnvCASHA256 = "OCTO_CA_SHA256"    // hex SHA-256 of the gateway CA's DER certificate
)

// Spec says how to submit one agent job.
type Spec struct {
	LaunchID  string        // recorded in the job's comment
	Agent     string        // the agent command line run by the job (already quoted)
	Partition string        // optional
	Account   string        // optional
	TimeLimit time.Duration // 0 = the partition's default
	Extra     []string      // more sbatch arguments, from the configuration
}

// validLaunchID reports whether id is 1-64 letters, digits, - or _. (Not a
// regexp: every octo-agent links this package, and a compiled pattern is
// work at each agent's start.)
func validLaunchID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// SbatchArgs is the sbatch command line submitting s: one agent per user
// (singleton), the launch id in the comment, the bootstrap variables
// exported by name.
func SbatchArgs(s Spec) ([]string, error) {
	if !validLaunchID(s.LaunchID) {
		return nil, fmt.Errorf("launch id %q: want 1-64 letters, digits, - or _", s.LaunchID)
	}
	if s.Agent == "" {
		return nil, errors.New("no agent command")
	}
	args := []string{"sbatch", "--parsable", "--job-name=" + JobName, "--dependency=singleton",
		"--comment=" + CommentPrefix + s.LaunchID,
		"--export=PATH,HOME,USER,LANG," + strings.Join([]string{EnvGateway, EnvLaunch, EnvToken, EnvCASHA256}, ","),
		"--output=/dev/null", "--nodes=1", "--ntasks=1",
		// A requeued job would start again with a spent token: after a node
		// failure the next request submits a new one instead.
		"--no-requeue"}
	if s.Partition != "" {
		args = append(args, "--partition="+s.Partition)
	}
	if s.Account != "" {
		args = append(args, "--account="+s.Account)
	}
	if s.TimeLimit > 0 {
		args = append(args, "--time="+strconv.Itoa(int((s.TimeLimit+time.Minute-1)/time.Minute)))
	}
	args = append(args, s.Extra...)
	return append(args, "--wrap=exec "+s.Agent), nil
}

// ParseJobID reads the job id sbatch --parsable prints ("ID" or
// "ID;CLUSTER") on its last line (warnings may come first when its standard
// error is merged).
func ParseJobID(out []byte) (string, error) {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	id, _, _ := strings.Cut(s, ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", fmt.Errorf("sbatch printed %q, not a job id", s)
	}
	return id, nil
}
