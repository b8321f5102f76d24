// Package e2e tests octo end to end under a real systemd: it boots a box
// (package box), installs octo with units/install.sh, and drives the HTTP
// API, the agents and systemctl the way an administrator and users would.
package e2e
