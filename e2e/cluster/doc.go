// Package cluster tests `octo serve` with backend.mode "slurm" end to end on
// a real two-node Slurm cluster (package slurmbox): users' agents placed
// by Slurm on h1 and h2, dialing back to the gateway, driven through the
// HTTP API.
package cluster
