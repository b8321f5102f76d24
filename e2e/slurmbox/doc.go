// Package slurmbox runs a real two-node Slurm cluster inside a test box
// (package box) for tests: slurmctld and munged on the box's own network
// (hostname ctl, 10.99.1.1), compute hosts h1 and h2 as network namespaces
// joined to it by veth pairs, each with a slurmd of its own. Users made for
// the test exist only in the box; closing the cluster powers the box off,
// which ends every daemon and namespace.
package slurmbox
