package config

import (
	"net"
	"path/filepath"
	"strings"
	"time"
)

// ModeSlurm places each user's agent as a Slurm job on a cluster node; the
// agent dials back to the control plane's gateway over mutual TLS.
const ModeSlurm = "slurm"

// Slurm configures the Slurm backend and its gateway.
type Slurm struct {
	Partition  string   `toml:"partition"`   // "" = the cluster's default
	Account    string   `toml:"account"`     // "" = the user's default
	SbatchArgs []string `toml:"sbatch_args"` // more sbatch arguments, e.g. ["--mem=2G"]
	TimeLimit  Duration `toml:"time_limit"`  // the agent job's --time; 0 = the partition's default
	// Listen is the gateway's TCP address; Advertise is the host:port agents
	// dial (its host goes into the gateway's certificate).
	Listen    string `toml:"listen"`
	Advertise string `toml:"advertise"`
	CACert    string `toml:"ca_cert"` // "" = state_dir/gateway-ca.pem
	CAKey     string `toml:"ca_key"`  // "" = state_dir/gateway-ca.key
	// AgentCommand runs in the job (on the node): octo-agent-dial.
	AgentCommand string `toml:"agent_command"`
	// IdleTimeout is the agent's --idle-timeout: its job ends that long
	// after its last request, with no session running.
	IdleTimeout Duration `toml:"idle_timeout"`
	// LaunchTimeout is how long a submitted job may take to start and
	// connect before octo cancels it.
	LaunchTimeout Duration `toml:"launch_timeout"`
	// RequestWait is how long a request waits for its user's agent to
	// connect before it is answered 503 (saying why the job is pending).
	RequestWait Duration `toml:"request_wait"`
	// CheckInterval is how often octo asks squeue whether the jobs of its
	// agent links still run (a link whose job ended is closed).
	CheckInterval Duration `toml:"check_interval"`
	// Conf is SLURM_CONF for every Slurm client octo runs ("" = Slurm's
	// default, /etc/slurm/slurm.conf).
	Conf string `toml:"slurm_conf"`
}

func defaultSlurm() Slurm {
	return Slurm{
		Listen:        "0.0.0.0:3443",
		AgentCommand:  "/usr/local/bin/octo-agent-dial",
		IdleTimeout:   Duration{15 * time.Minute},
		LaunchTimeout: Duration{5 * time.Minute},
		RequestWait:   Duration{30 * time.Second},
		CheckInterval: Duration{10 * time.Second},
		TimeLimit:     Duration{24 * time.Hour},
		SbatchArgs:    []string{},
	}
}

// CAPaths returns the gateway CA's certificate and key paths.
func (c Config) CAPaths() (cert, key string) {
	cert, key = c.Slurm.CACert, c.Slurm.CAKey
	if cert == "" {
		cert = filepath.Join(c.Server.StateDir, "gateway-ca.pem")
	}
	if key == "" {
		key = filepath.Join(c.Server.StateDir, "gateway-ca.key")
	}
	return cert, key
}

func (s Slurm) validate() error {
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return keyError("slurm.listen", "%q is not host:port (e.g. \"0.0.0.0:3443\")", s.Listen)
	}
	if h, _, err := net.SplitHostPort(s.Advertise); err != nil || h == "" {
		return keyError("slurm.advertise", "%q must be the host:port agents on the nodes dial (e.g. \"octo.cluster:3443\")", s.Advertise)
	}
	for _, p := range []struct{ key, v string }{{"slurm.ca_cert", s.CACert}, {"slurm.ca_key", s.CAKey}, {"slurm.slurm_conf", s.Conf}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return keyError(p.key, "%q must be an absolute path", p.v)
		}
	}
	if f := strings.Fields(s.AgentCommand); len(f) == 0 || !filepath.IsAbs(f[0]) {
		return keyError("slurm.agent_command", "%q must start with the absolute path of octo-agent-dial on the nodes", s.AgentCommand)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"slurm.launch_timeout", s.LaunchTimeout}, {"slurm.request_wait", s.RequestWait}, {"slurm.idle_timeout", s.IdleTimeout}, {"slurm.check_interval", s.CheckInterval}} {
		if d.v.Duration <= 0 {
			return keyError(d.key, "must be a positive duration such as \"30s\"")
		}
	}
	if s.TimeLimit.Duration < 0 {
		return keyError("slurm.time_limit", "must not be negative (0 = the partition's default)")
	}
	for _, a := range s.SbatchArgs {
		if !strings.HasPrefix(a, "--") || strings.HasPrefix(a, "--wrap") || strings.HasPrefix(a, "--export") || strings.HasPrefix(a, "--comment") {
			return keyError("slurm.sbatch_args", "%q: give long options (--name=value); octo sets --wrap, --export and --comment itself", a)
		}
	}
	return nil
}
