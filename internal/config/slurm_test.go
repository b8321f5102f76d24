package config

import (
	"strings"
	"testing"
)

func TestSlurmSection(t *testing.T) {
	good := "[backend]\nmode = \"slurm\"\n[slurm]\nadvertise = \"head:3443\"\n"
	var cfg Config
	cfg = Default()
	if err := Parse("c.toml", good, &cfg); err != nil {
		t.Fatalf("Parse(%q) = %v", good, err)
	}
	if cert, key := cfg.CAPaths(); cert != "/var/lib/octo/gateway-ca.pem" || key != "/var/lib/octo/gateway-ca.key" {
		t.Errorf("CAPaths = %s, %s; want them in state_dir", cert, key)
	}
	for _, tc := range []struct{ extra, key string }{
		{`listen = "3443"`, "slurm.listen"},
		{`ca_key = "rel/key"`, "slurm.ca_key"},
		{`agent_command = "octo-agent dial"`, "slurm.agent_command"},
		{`launch_timeout = "0s"`, "slurm.launch_timeout"},
		{`sbatch_args = ["--wrap=sh"]`, "slurm.sbatch_args"},
		{`sbatch_args = ["-p", "x"]`, "slurm.sbatch_args"},
		{`time_limit = "-1h"`, "slurm.time_limit"},
	} {
		cfg := Default()
		err := Parse("c.toml", good+tc.extra+"\n", &cfg)
		if err == nil || !strings.Contains(err.Error(), "key "+tc.key) || !strings.Contains(err.Error(), "c.toml") {
			t.Errorf("Parse with %s = %v, want an error naming c.toml and key %s", tc.extra, err, tc.key)
		}
	}
	// advertise is required in slurm mode only.
	cfg = Default()
	if err := Parse("c.toml", "[backend]\nmode = \"slurm\"\n", &cfg); err == nil || !strings.Contains(err.Error(), "slurm.advertise") {
		t.Errorf("slurm mode without advertise = %v, want an error naming slurm.advertise", err)
	}
	cfg = Default()
	if err := Parse("c.toml", "[slurm]\npartition = \"p\"\n", &cfg); err != nil {
		t.Errorf("[slurm] in local mode = %v, want nil", err)
	}
}
