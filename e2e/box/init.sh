#!/bin/sh
# Runs as PID 1 of a new PID, mount, network and cgroup namespace (unshare),
# builds the box's root and becomes its systemd. $1 is the shared directory;
# any further arguments name cgroup v1 hierarchies ("memory", "cpu,cpuacct",
# "name=systemd") for a hybrid box (see doc.go).
set -eu
share=$1
shift
mount --make-rprivate /

# The root: an overlay of the host's /, writes going to a tmpfs, so that
# nothing done in the box (users, units, systemd's tmpfiles) reaches the host.
scratch=$share/.root
mkdir -p "$scratch"
mount -t tmpfs -o mode=0755 octo-box "$scratch"
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay octo-box -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
root=$scratch/root

mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
# A cgroup tree of our own (the cgroup namespace makes its roots ours).
cg=$root/sys/fs/cgroup
umount -R "$cg" 2>/dev/null || umount -l "$cg" 2>/dev/null || true
if [ $# -eq 0 ]; then
	mount -t cgroup2 cgroup2 "$cg"
else
	# Hybrid, as systemd sets it up on such a host: a tmpfs with cgroup2 at
	# unified and each v1 hierarchy at its controllers' name. Mounting an
	# existing hierarchy attaches it; its root here is the box's cgroup.
	mount -t tmpfs -o mode=0755,nosuid,nodev,noexec octo-box-cgroup "$cg"
	mkdir "$cg/unified"
	mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$cg/unified"
	for h in "$@"; do
		dir=${h#name=}
		mkdir "$cg/$dir"
		mount -t cgroup -o "nosuid,nodev,noexec,$h" cgroup "$cg/$dir"
		case $h in *,*)
			# cpu,cpuacct: systemd finds each controller by its own name.
			for c in $(echo "$h" | tr , ' '); do ln -s "$dir" "$cg/$c"; done
			;;
		esac
	done
	# Read-only, as systemd leaves it once it has mounted the hierarchies:
	# the box's systemd finds them all here and adds nothing (it would try
	# cpu,cpuacct where the host mounts them apart).
	mount -o remount,ro,nosuid,nodev,noexec,mode=0755 octo-box-cgroup "$cg"
fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mkdir -p "$root/octo-share"
mount --bind "$share" "$root/octo-share"

ip link set lo up

mkdir -p "$root/etc/systemd/system"
cat > "$root/etc/systemd/system/octo-box.target" <<'EOF'
[Unit]
Description=octo end-to-end box
Requires=basic.target dbus.service systemd-logind.service
After=basic.target dbus.service systemd-logind.service
AllowIsolate=yes
EOF

cd "$root"
mkdir -p .octo-oldroot
pivot_root . .octo-oldroot
umount -l /.octo-oldroot
rmdir /.octo-oldroot
export container=other
exec /lib/systemd/systemd --system --unit=octo-box.target --log-target=console --log-level=notice
