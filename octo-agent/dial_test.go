package main

import (
	"strings"
	"testing"

	"octo/internal/slurm"
)

func TestDialerFromEnv(t *testing.T) {
	full := map[string]string{slurm.EnvGateway: "head:3443", slurm.EnvLaunch: "L1",
		slurm.EnvToken: "tok", slurm.EnvCASHA256: "ab12"}
	d, err := dialerFromEnv(func(k string) string { return full[k] })
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != "head:3443" || d.LaunchID != "L1" || d.Token != "tok" || d.CASHA256 != "ab12" || d.Munge == nil {
		t.Errorf("dialer = %+v, want the environment's values and a MUNGE source", d)
	}
	for name := range full {
		_, err := dialerFromEnv(func(k string) string {
			if k == name {
				return ""
			}
			return full[k]
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without $%s: %v, want an error naming it", name, err)
		}
	}
}
