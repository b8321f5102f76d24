#!/bin/sh
# Runs as PID 1 of a new PID, mount, network and cgroup namespace (unshare),
# builds the box's root and becomes its systemd. $1 is the shared directory.
set -eu
share=$1
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
# A cgroup2 tree of our own (the cgroup namespace makes its root ours).
umount -R "$root/sys/fs/cgroup" 2>/dev/null || umount -l "$root/sys/fs/cgroup" 2>/dev/null || true
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
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
