#!/bin/sh
# Installs from Debian what the Slurm end-to-end suite (e2e/slurmbox and the
# tests that use it) needs: slurmctld, slurmd, the clients (sbatch, squeue,
# scancel) and MUNGE (munged, munge, unmunge). About 12 MB, no images. The
# suite runs every daemon inside a test box with its own configuration and
# key; nothing here starts or configures them on this machine (policy-rc.d
# or no systemd keeps the packages' services down; they are stopped if one
# started). Idempotent: installs only what is missing.
set -eu
pkgs="slurmctld slurmd slurm-client munge"
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# shellcheck disable=SC2086
	apt-get install -y --no-install-recommends $missing
fi
# A host with a running systemd starts the packages' services on install:
# the suite needs none of them on the host.
if [ -d /run/systemd/system ]; then
	systemctl disable --now slurmctld.service slurmd.service munge.service 2>/dev/null || true
fi
echo "setup-slurm.sh: ready"
