#!/usr/bin/env bash
# Installs Podman from Debian, starts its Docker-compatible API service on a
# private socket and builds the octo-agent-base test image (a busybox-static
# rootfs). Idempotent. Needs root. Progress goes to stderr; stdout carries only
# `export NAME=value` lines for `eval`:
#
#   eval "$(bash .ci/setup-engine.sh)"
#
# Environment: OCTO_CI_DIR (default /run/octo-ci) holds the socket, pid and log.
set -euo pipefail

ci_dir=${OCTO_CI_DIR:-/run/octo-ci}
sock=$ci_dir/podman.sock
image=octo-agent-base:latest

log() { echo "setup-engine: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (installs packages, runs a rootful engine)"
	exit 1
fi

install_packages() {
	local missing=()
	command -v podman >/dev/null || missing+=(podman)
	dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
	command -v curl >/dev/null || missing+=(curl)
	command -v runc >/dev/null || missing+=(runc)
	if [ ${#missing[@]} -eq 0 ]; then
		return
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq "${missing[@]}" >&2
}

# Podman fails every run with "error setting rlimit type 7: operation not
# permitted" on machines without CAP_SYS_RESOURCE unless the default ulimits
# stay below the hard limits; and without systemd as PID 1 it must log events
# to a file and manage cgroups itself. crun refuses this machine's hybrid
# cgroup layout ("cgroups in hybrid mode not supported"); runc accepts it.
configure_podman() {
	local conf=/etc/containers/containers.conf
	mkdir -p /etc/containers
	if grep -q '^# octo-ci v2' "$conf" 2>/dev/null; then
		return
	fi
	if [ -s "$conf" ] && ! grep -q '^# octo-ci' "$conf" && grep -qv '^[[:space:]]*\(#.*\)\?$' "$conf"; then
		log "keeping existing $conf (not written by this script); check its default_ulimits"
		return
	fi
	log "writing $conf"
	conf_changed=1
	cat >"$conf" <<'CONF'
# octo-ci v2: written by .ci/setup-engine.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
}

conf_changed=0

ping() { curl -fsS --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }

start_service() {
	mkdir -p "$ci_dir"
	if [ "$conf_changed" = 1 ] && [ -s "$ci_dir/podman.pid" ] && kill "$(cat "$ci_dir/podman.pid")" 2>/dev/null; then
		log "restarting the podman service for the new configuration"
		for _ in $(seq 1 50); do ping || break; sleep 0.1; done
	fi
	if ping; then
		log "engine already answers on $sock"
		return
	fi
	rm -f "$sock"
	log "starting podman system service on $sock"
	setsid nohup podman system service --time=0 "unix://$sock" </dev/null >"$ci_dir/podman.log" 2>&1 &
	echo $! >"$ci_dir/podman.pid"
	for _ in $(seq 1 300); do
		if ping; then
			return
		fi
		sleep 0.1
	done
	log "podman service did not answer on $sock within 30s; its log:"
	tail -20 "$ci_dir/podman.log" >&2
	exit 1
}

build_image() {
	if podman image exists "$image"; then
		log "image $image exists"
		return
	fi
	log "building $image from busybox-static"
	local root tarball
	root=$(mktemp -d)
	tarball=$(mktemp)
	mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,run,usr/local/bin}
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for cmd in $(/bin/busybox --list); do
		[ "$cmd" = busybox ] || ln -s busybox "$root/bin/$cmd"
	done
	tar -C "$root" -cf "$tarball" .
	podman import --change 'ENV PATH=/usr/local/bin:/bin' --change 'CMD ["/bin/sh"]' "$tarball" "$image" >&2
	rm -rf "$root" "$tarball"
}

install_packages
configure_podman
start_service
build_image
if ! podman run --rm --network none "$image" true >&2; then
	log "a test run of $image failed; see the error above"
	exit 1
fi

echo "export OCTO_TEST_ENGINE_SOCKET=$sock"
echo "export OCTO_TEST_IMAGE=$image"
