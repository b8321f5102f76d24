#!/bin/sh
# Installs from Debian what the end-to-end suite (e2e/) and the unit checks
# (units/) need: systemd (systemd-analyze, and the systemd each test box
# boots), D-Bus and logind for the box's minimal target and systemd --user
# (linger), util-linux (unshare, nsenter, runuser), iproute2 (ip), passwd
# (useradd), curl; wrk (keep-alive load across restarts); git and gcc for
# the test that ordinary work runs in the agent's sandbox; prometheus for
# promtool, which checks octo's /metrics exposition. Idempotent: installs
# only what is missing.
set -eu
pkgs="systemd systemd-sysv dbus libpam-systemd util-linux iproute2 passwd curl procps git gcc libc6-dev wrk prometheus"
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
	# Only promtool is wanted: a Prometheus server the package may have
	# started would scrape and listen for nothing.
	case $missing in *prometheus*)
		# (disable works without a running systemd too: each test box boots
		# from this root.)
		for u in prometheus.service prometheus-node-exporter.service; do
			systemctl disable "$u" 2>/dev/null || true
			systemctl stop "$u" 2>/dev/null || true
		done
		;;
	esac
fi
# The box needs a cgroup2 hierarchy and overlayfs.
if ! grep -q cgroup2 /proc/mounts; then
	echo "setup-e2e.sh: no cgroup2 hierarchy mounted; the e2e suite needs one" >&2
	exit 1
fi
modprobe overlay 2>/dev/null || true
if ! grep -qw overlay /proc/filesystems; then
	echo "setup-e2e.sh: overlayfs is not available; the e2e suite needs it" >&2
	exit 1
fi
echo "setup-e2e.sh: ready"
