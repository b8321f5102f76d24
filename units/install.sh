#!/bin/sh
# Install octo: the octo, octo-agent and octo-agent-dial (the agent Slurm
# places, for the slurm backend) binaries, the systemd units, and the
# tmpfiles.d and sysusers.d files, so that no manual useradd or mkdir is needed.
#
#   units/install.sh              system-wide (as root), then run
#                                 systemd-sysusers, systemd-tmpfiles --create
#                                 and systemctl daemon-reload
#   units/install.sh --user       your own systemd --user units in
#                                 ~/.config/systemd/user and a single-user
#                                 ~/.config/octo/config.toml (127.0.0.1:3000)
#   --no-binaries                 install units only; PREFIX/bin must already
#                                 hold the binaries
#   --upgrade                     then apply it to what runs: reload every
#                                 running agent (its sessions keep running;
#                                 see octo-agent reload) and restart a running
#                                 octo.service (no request is lost: systemd
#                                 holds its sockets). Without it, nothing
#                                 running is touched.
#
# Environment:
#   DESTDIR     stage everything under this root and run nothing
#   PREFIX      binaries go to PREFIX/bin and the units point there
#               (default /usr/local; with --user, ~/.local)
#   OCTO_BINDIR copy the three prebuilt binaries from this directory
#               instead of building them (go build, CGO_ENABLED=0)
#   GO          the go command (default: go)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
mode=system
binaries=yes
# commands are the binaries install_binaries builds and installs.
commands="octo octo-agent octo-agent-dial"
upgrade=no
for arg in "$@"; do
	case $arg in
	--user) mode=user ;;
	--no-binaries) binaries=no ;;
	--upgrade) upgrade=yes ;;
	-h | --help)
		sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install.sh: unknown argument $arg (see: $0 --help)" >&2
		exit 2
		;;
	esac
done

DESTDIR=${DESTDIR:-}
if [ "$mode" = user ]; then
	: "${HOME:?install.sh --user: HOME is not set}"
	PREFIX=${PREFIX:-$HOME/.local}
	confhome=${XDG_CONFIG_HOME:-$HOME/.config}
else
	PREFIX=${PREFIX:-/usr/local}
fi
case $PREFIX in
/*) ;;
*)
	echo "install.sh: PREFIX must be an absolute path, not $PREFIX" >&2
	exit 2
	;;
esac
bindir=$PREFIX/bin

say() { echo "install.sh: $*"; }

# put_unit SRC DSTDIR [MODE]: install a unit file (mode 0644, or MODE) with
# ExecStart pointing at bindir.
put_unit() {
	mkdir -p "$2"
	tmp=$(mktemp "$2/.octo-install.XXXXXX")
	sed "s|/usr/local/bin/|$bindir/|g" "$1" >"$tmp"
	chmod "${3:-0644}" "$tmp"
	mv -f "$tmp" "$2/$(basename "$1")"
}

install_binaries() {
	mkdir -p "$DESTDIR$bindir"
	if [ -n "${OCTO_BINDIR:-}" ]; then
		from=$OCTO_BINDIR
	else
		from=$(mktemp -d)
		trap 'rm -rf "$from"' EXIT
		say "building $commands in $src"
		for b in $commands; do
			(cd "$src" && CGO_ENABLED=0 ${GO:-go} build -trimpath -o "$from/$b" "./$b")
		done
	fi
	# System-wide the binaries are root's and execute-only for everyone else.
	# Security: the kernel makes a process non-dumpable from execve on when
	# it cannot read the file it executes, so no other process of an
	# agent's user can ptrace it or take the listening socket systemd passes
	# it (pidfd_getfd) in the moment before octo-agent's own prctl. A --user
	# install is the user's own, mode 0755.
	binmode=0755
	if [ "$mode" = system ]; then
		binmode=0711
	fi
	for b in $commands; do
		if [ ! -x "$from/$b" ]; then
			echo "install.sh: $from/$b is missing or not executable (set OCTO_BINDIR to a directory holding $commands, or unset it to build)" >&2
			exit 1
		fi
		# Copy then rename: a running binary is replaced, never rewritten.
		cp "$from/$b" "$DESTDIR$bindir/.$b.new"
		if [ "$mode" = system ] && [ "$(id -u)" = 0 ]; then
			chown 0:0 "$DESTDIR$bindir/.$b.new"
		fi
		chmod "$binmode" "$DESTDIR$bindir/.$b.new"
		mv -f "$DESTDIR$bindir/.$b.new" "$DESTDIR$bindir/$b"
	done
	say "installed $commands in $DESTDIR$bindir"
}

install_system() {
	for u in "$here"/system/*; do put_unit "$u" "$DESTDIR/etc/systemd/system"; done
	for u in "$here"/user/*; do put_unit "$u" "$DESTDIR/etc/systemd/user"; done
	# The generator that spreads the agents over slices (units/README.md).
	put_unit "$here/system-generators/octo-agent-slices" "$DESTDIR/etc/systemd/system-generators" 0755
	mkdir -p "$DESTDIR/etc/tmpfiles.d" "$DESTDIR/etc/sysusers.d"
	cp "$here/tmpfiles.d/octo.conf" "$DESTDIR/etc/tmpfiles.d/octo.conf"
	cp "$here/sysusers.d/octo.conf" "$DESTDIR/etc/sysusers.d/octo.conf"
	chmod 0644 "$DESTDIR/etc/tmpfiles.d/octo.conf" "$DESTDIR/etc/sysusers.d/octo.conf"
	if [ ! -e "$DESTDIR/etc/octo/config.toml" ] && [ -f "$src/testdata/config.example.toml" ]; then
		mkdir -p "$DESTDIR/etc/octo"
		cp "$src/testdata/config.example.toml" "$DESTDIR/etc/octo/config.toml"
		chmod 0644 "$DESTDIR/etc/octo/config.toml"
		say "wrote $DESTDIR/etc/octo/config.toml (all defaults; edit [users] to choose who is served)"
	fi
	say "installed units in $DESTDIR/etc/systemd/system and $DESTDIR/etc/systemd/user"
	if [ -n "$DESTDIR" ]; then
		return
	fi
	systemd-sysusers /etc/sysusers.d/octo.conf
	systemd-tmpfiles --create /etc/tmpfiles.d/octo.conf
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
	else
		say "systemd is not running; skipped systemctl daemon-reload"
	fi
	say "next: systemctl enable --now octo.socket octo-agent@USER.socket (one agent socket per user)"
}

install_user() {
	unitdir=$DESTDIR$confhome/systemd/user
	for u in "$here"/user/*; do put_unit "$u" "$unitdir"; done
	conf=$DESTDIR$confhome/octo/config.toml
	if [ ! -e "$conf" ]; then
		uid=$(id -u)
		name=$(id -un)
		mkdir -p "$(dirname "$conf")"
		cat >"$conf" <<EOF
# Single-user octo control plane (systemd --user units from units/install.sh --user).
[server]
listen = "127.0.0.1:3000"
api_socket = "/run/user/$uid/octo.sock"
state_dir = "${XDG_STATE_HOME:-$HOME/.local/state}/octo"

[backend]
mode = "local"

[local]
# No system agents here: $name's agent is octo-user.socket's.
socket_dir = "/run/user/$uid"
user_socket = "/run/user/{uid}/octo-agent.sock"

[users]
allow = ["$name"]
EOF
		chmod 0600 "$conf"
		say "wrote $conf"
	fi
	say "installed units in $unitdir"
	if [ -z "$DESTDIR" ] && systemctl --user daemon-reload 2>/dev/null; then
		say "next: systemctl --user enable --now octo-user.socket octo.socket"
	else
		say "then, in your session: systemctl --user daemon-reload && systemctl --user enable --now octo-user.socket octo.socket"
	fi
}

# upgrade_running reloads the running agents, then restarts a running
# control plane. A reload that fails leaves that agent on the old binary,
# serving its sessions; the script says so and exits non-zero at the end.
upgrade_running() {
	if [ -n "$DESTDIR" ]; then
		say "DESTDIR is set: --upgrade touches nothing running"
		return
	fi
	if [ "$mode" = user ]; then
		sc="systemctl --user"
		agents=octo-user.service
	else
		sc=systemctl
		agents=$($sc list-units --plain --no-legend --state=active 'octo-agent@*.service' | awk '{print $1}')
	fi
	failed=0
	for a in $agents; do
		$sc is-active --quiet "$a" || continue
		if $sc reload "$a"; then
			say "reloaded $a: its sessions run on under the new binary"
		else
			failed=1
			say "reloading $a failed; it serves on with the old binary (journalctl -u $a says why; systemctl restart $a ends its sessions)" >&2
		fi
	done
	if $sc is-active --quiet octo.service; then
		$sc restart octo.service
		say "restarted octo.service"
	fi
	return $failed
}

if [ "$binaries" = yes ]; then
	install_binaries
fi
install_"$mode"
if [ "$upgrade" = yes ]; then
	upgrade_running
fi
