package main

import (
	"errors"
	"fmt"

	"octo/internal/agentslice"
)

// enableDirs are where systemctl enable links the agents' sockets: the
// administrator's units and, with --runtime, /run's.
var enableDirs = []string{"/etc/systemd/system", "/run/systemd/system"}

// agentSlicesCmd is the systemd generator that installs as
// system-generators/octo-agent-slices: systemd runs it at boot and on every
// daemon-reload (systemctl enable reloads) with its output directories, and
// it writes there the drop-ins that place each enabled user's agent in one
// of agentslice.Groups slices.
func agentSlicesCmd(args []string) error {
	if len(args) != 1 && len(args) != 3 {
		return fmt.Errorf("%w: agent-slices NORMAL-DIR [EARLY-DIR LATE-DIR] (systemd runs it as a generator)", errUsage)
	}
	// What can be placed is, even if something could not be read: each
	// agent left out just stays in the common slice.
	users, ferr := agentslice.Instances(enableDirs...)
	werr := agentslice.Write(args[0], users)
	if ferr != nil {
		ferr = fmt.Errorf("find enabled agents: %w", ferr)
	}
	if werr != nil {
		werr = fmt.Errorf("write agent slices: %w", werr)
	}
	return errors.Join(ferr, werr)
}
