#!/usr/bin/env bash
# Installs a container engine from Debian, starts its Docker Engine API on a
# private socket and builds the octo-agent-base test image (a busybox-static
# rootfs). Idempotent. Needs root. Progress goes to stderr; stdout carries only
# `export NAME=value` lines for `eval`:
#
#   eval "$(bash .ci/setup-engine.sh)"
#
# Environment: OCTO_CI_ENGINE is podman (default: `podman system service`) or
# docker (docker.io's dockerd); OCTO_CI_DIR (default /run/octo-ci) holds the
# socket, pid and log.
set -euo pipefail

engine=${OCTO_CI_ENGINE:-podman}
ci_dir=${OCTO_CI_DIR:-/run/octo-ci}
sock=$ci_dir/$engine.sock
image=octo-agent-base:latest

log() { echo "setup-engine: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	log "must run as root (installs packages, runs a rootful engine)"
	exit 1
fi

case $engine in
podman | docker) ;;
*)
	log "OCTO_CI_ENGINE=$engine: use podman or docker"
	exit 2
	;;
esac

install_packages() {
	local missing=()
	command -v podman >/dev/null || missing+=(podman)
	if [ "$engine" = docker ]; then
		command -v dockerd >/dev/null || missing+=(docker.io)
	fi
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
	# A service left by an earlier run whose working directory was deleted
	# (a CI clone removed since) answers pings, but conmon fails to start
	# containers ("Failed to get working directory"): start a new one.
	for pidfile in "$ci_dir/podman.pid" "$ci_dir/docker.pid"; do
		if [ -s "$pidfile" ] && [[ "$(readlink "/proc/$(cat "$pidfile")/cwd" 2>/dev/null)" == *"(deleted)" ]]; then
			log "restarting the $engine service: its working directory was deleted"
			kill "$(cat "$pidfile")" 2>/dev/null || true
			for _ in $(seq 1 50); do ping || break; sleep 0.1; done
		fi
	done
	if ping; then
		log "engine already answers on $sock"
		return
	fi
	rm -f "$sock"
	if [ "$engine" = docker ]; then
		log "starting dockerd on $sock"
		# Only --network none is used: no bridge, no iptables.
		# From /: the service and the containers it starts must not hold a
		# CI clone's directory, which may be deleted while they run.
		(cd / && exec setsid nohup dockerd -H "unix://$sock" --data-root /var/lib/octo-ci-docker \
			--exec-root "$ci_dir/docker-exec" --pidfile "$ci_dir/docker.pid" \
			--iptables=false --ip-masq=false --bridge=none --containerd-namespace octo-ci \
			</dev/null >"$ci_dir/docker.log" 2>&1) &
	else
		log "starting podman system service on $sock"
		(cd / && exec setsid nohup podman system service --time=0 "unix://$sock" </dev/null >"$ci_dir/podman.log" 2>&1) &
		echo $! >"$ci_dir/podman.pid"
	fi
	for _ in $(seq 1 300); do
		if ping; then
			return
		fi
		sleep 0.1
	done
	log "$engine did not answer on $sock within 30s; its log:"
	tail -20 "$ci_dir/$engine.log" >&2
	exit 1
}

image_exists() {
	if [ "$engine" = docker ]; then
		curl -fsS --unix-socket "$sock" "http://d/v1.41/images/$image/json" >/dev/null 2>&1
	else
		podman image exists "$image"
	fi
}

import_image() {
	if [ "$engine" = docker ]; then
		local reply
		reply=$(curl -fsS --unix-socket "$sock" -X POST -H 'Content-Type: application/x-tar' \
			--data-binary "@$1" "http://d/v1.41/images/create?fromSrc=-&repo=$image")
		if grep -q '"error"' <<<"$reply"; then
			log "import failed: $reply"
			exit 1
		fi
	else
		podman import --change 'ENV PATH=/usr/local/bin:/bin' --change 'CMD ["/bin/sh"]' "$1" "$image" >&2
	fi
}

test_run() {
	if [ "$engine" = docker ]; then
		local id
		id=$(curl -fsS --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
			-d "{\"Image\":\"$image\",\"Cmd\":[\"true\"],\"HostConfig\":{\"NetworkMode\":\"none\"}}" \
			http://d/v1.41/containers/create | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
		curl -fsS --unix-socket "$sock" -X POST "http://d/v1.41/containers/$id/start" >&2 &&
			curl -fsS --unix-socket "$sock" -X POST "http://d/v1.41/containers/$id/wait" | grep -q '"StatusCode":0' &&
			curl -fsS --unix-socket "$sock" -X DELETE "http://d/v1.41/containers/$id" >&2
	else
		podman run --rm --network none "$image" true >&2
	fi
}

build_image() {
	if image_exists; then
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
	import_image "$tarball"
	rm -rf "$root" "$tarball"
}

install_packages
configure_podman
start_service
build_image
if ! test_run; then
	log "a test run of $image failed; see the error above"
	exit 1
fi

echo "export OCTO_TEST_ENGINE_SOCKET=$sock"
echo "export OCTO_TEST_IMAGE=$image"
