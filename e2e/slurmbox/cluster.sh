#!/bin/sh
# Runs inside a test box as root: builds a two-node Slurm cluster whose
# traffic never leaves the box. The controller (hostname ctl) and munged run
# in the box's own network namespace; compute hosts h1 and h2 are network
# namespaces joined to it by veth pairs, each running slurmd with its own
# hostname. Every file is written inside the box (its root is an overlay).
# $1: the users to create (space separated).
set -eu
users=$1
export SLURM_CONF=/etc/slurm/slurm.conf

for u in $users; do
	id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$u"
done

# MUNGE: a fresh key, munged under its Debian unit (as the munge user).
mkdir -p /etc/munge
dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
systemctl start munge.service

# The network: ctl is 10.99.N.1 on the veth towards hN, hN is 10.99.N.2.
for n in 1 2; do
	h=h$n
	ip netns add "$h"
	ip link add "c-$h" type veth peer name eth0 netns "$h"
	ip addr add "10.99.$n.1/24" dev "c-$h"
	ip link set "c-$h" up
	ip -n "$h" link set lo up
	ip -n "$h" addr add "10.99.$n.2/24" dev eth0
	ip -n "$h" link set eth0 up
	ip -n "$h" route add default via "10.99.$n.1"
done

mkdir -p /etc/slurm /var/spool/octo-slurm/ctld /var/spool/octo-slurm/h1 /var/spool/octo-slurm/h2 /var/log/octo-slurm /run/octo-slurm
cat > /etc/slurm/slurm.conf <<'CONF'
ClusterName=octo
SlurmctldHost=ctl(10.99.1.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/octo-slurm/ctld
SlurmdSpoolDir=/var/spool/octo-slurm/%n
SlurmctldPidFile=/run/octo-slurm/slurmctld.pid
SlurmdPidFile=/run/octo-slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/octo-slurm/slurmctld.log
SlurmdLogFile=/var/log/octo-slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=20
InactiveLimit=0
KillWait=2
MinJobAge=30
NodeName=h1 NodeAddr=10.99.1.2 CPUs=1 State=UNKNOWN
NodeName=h2 NodeAddr=10.99.2.2 CPUs=1 State=UNKNOWN
PartitionName=main Nodes=h1,h2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

# Slurm 22.05's slurmd reads /proc/self/cgroup. On a host whose kernel has
# cgroup v1 hierarchies next to the unified one, those lines show in every
# namespace, and its cgroup/v2 plugin refuses ("Hybrid mode is not
# supported") a pure cgroup2 tree. There each slurmd gets a mount namespace
# of its own with the v1 layout (a tmpfs at /sys/fs/cgroup, one mount per
# hierarchy), which cgroup/v1 accepts; the jobs need no controller
# (proctrack/linuxproc, task/none). A box on a host that binds memory and
# pids to v1 has that layout already (e2e/box: hybrid), and this repeats it;
# a box that mounts cgroup2 alone next to v1 hierarchies needs it.
cat > /etc/slurm/cgroup.conf <<'CONF'
IgnoreSystemd=yes
CONF
cgsetup=/etc/slurm/octo-cgroup-v1.sh
{
	echo 'set -e'
	if grep -qv '^0::' /proc/self/cgroup; then
		echo 'mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup'
		grep -v '^0::' /proc/self/cgroup | cut -d: -f2 | while read -r opts; do
			dir=${opts#name=}
			echo "mkdir -p /sys/fs/cgroup/$dir; mount -t cgroup -o $opts cgroup /sys/fs/cgroup/$dir"
		done
		echo 'mkdir -p /sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified'
	fi
} > "$cgsetup"

# /etc/slurm/octo-start DAEMON starts one daemon (ctl, h1 or h2) as a
# transient unit, octo-slurmctld or octo-slurmd-hN; a test may stop one and
# start it again.
cat > /etc/slurm/octo-start <<START
#!/bin/sh
set -eu
case \$1 in
ctl)
	exec systemd-run --quiet --unit=octo-slurmctld --setenv=SLURM_CONF=$SLURM_CONF -- \\
		unshare --uts sh -c 'hostname ctl; exec slurmctld -D'
	;;
h1|h2)
	# KillMode=process: a test killing slurmd leaves its jobs running, as
	# when slurmd dies on a real node.
	exec systemd-run --quiet --unit="octo-slurmd-\$1" --property=KillMode=process --setenv=SLURM_CONF=$SLURM_CONF -- \\
		nsenter --net="/var/run/netns/\$1" unshare --uts --mount --propagation private \\
		sh -c "hostname \$1; . $cgsetup; exec slurmd -D"
	;;
esac
echo "octo-start: unknown daemon \$1" >&2
exit 2
START
chmod 0755 /etc/slurm/octo-start
for d in ctl h1 h2; do /etc/slurm/octo-start "$d"; done
