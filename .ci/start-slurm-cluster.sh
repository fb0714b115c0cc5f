#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine, without systemd: munged, MariaDB, slurmdbd (accounting),
# slurmctld and slurmd, with two partitions (`low`, the default, and `high`, which preempts it by requeueing).
# Used by CI (.ci/run) and by tests/test_slurm.py. Needs root and Debian's packages:
#   apt-get install --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server
# Idempotent: with the cluster already up it checks and returns at once. Prints the time it took.
# It writes /etc/slurm/slurm.conf and slurmdbd.conf, and refuses to overwrite ones it did not write.
set -euo pipefail
t0=$(date +%s%N)
MARK="# trpo-lab single-node test cluster (written by .ci/start-slurm-cluster.sh)"
CLUSTER=trpolab
die() { echo "start-slurm-cluster: $*" >&2; exit 2; }
elapsed() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

[ "$(id -u)" = 0 ] || die "needs root (it starts system daemons)"
for b in munged mariadbd slurmdbd slurmctld slurmd sacctmgr sinfo sbatch sacct; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found; install: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
done
export PATH="/usr/sbin:$PATH"
for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
  [ ! -e "$f" ] || head -1 "$f" | grep -qF "$MARK" || die "$f exists and was not written by this script; not touching a real cluster's config"
done

node_ready() { sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }
if [ -f /etc/slurm/slurm.conf ] && node_ready && sacct -n -X -S now-1minute >/dev/null 2>&1; then
  echo "slurm cluster already up ($(elapsed) s)"; exit 0
fi

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "$what did not come up within ${limit} s (logs: /var/log/slurm/, /var/log/munge/)"
    sleep 0.2
  done
}
running() { pgrep -x "$1" >/dev/null; }

# -- munge: its runtime folder with its owner, and munged run as the munge user ---------------------------------
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
running munged || runuser -u munge -- munged --force  # --force: past a stale socket of a killed munged
wait_for 10 munged bash -c 'munge -n | unmunge'

# -- MariaDB for slurmdbd ---------------------------------------------------------------------------------------
install -d -o mysql -g mysql -m 0755 /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! running mariadbd; then
  setsid mariadbd --user=mysql --skip-networking=0 --bind-address=127.0.0.1 </dev/null >>/var/log/mysql-trpolab.log 2>&1 &
fi
wait_for 30 mariadb mariadb -e 'SELECT 1'
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbd-local';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

# -- Slurm's folders and configs --------------------------------------------------------------------------------
install -d -o slurm -g slurm -m 0755 /run/slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
install -d -m 0755 /var/lib/slurm/slurmd /etc/slurm
host=$(hostname -s)
# The node's layout as slurmd itself detects it (CPUs, sockets, cores, threads, memory), minus the uptime line.
node_line=$(slurmd -C | grep '^NodeName=')
cat > /etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbd-local
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 0600 /etc/slurm/slurmdbd.conf

cat > /etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
# A requeued job may start again only once its old credential has expired (default 120 s): 10 s, with a short
# scheduling interval, restarts it in about 15 s.
AuthInfo=cred_expire=10
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
# No cgroups in a container: track processes by parent id, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
# submitit learns how a job without a result ended from sacct: accounting is required.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
# Preemption by partition priority: a job in 'high' requeues one in 'low'; the job first gets its --signal
# (submitit's USR2) and GraceTime seconds to checkpoint.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
JobRequeue=1
# A requeued job appends to its log instead of truncating it.
JobFileAppend=1
KillWait=30
MinJobAge=600
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node_line State=UNKNOWN
PartitionName=low Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
chmod 0644 /etc/slurm/slurm.conf

# -- daemons: accounting first (slurmctld registers with it), then the controller, then the node ---------------
running slurmdbd || slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
running slurmctld || slurmctld
wait_for 30 slurmctld scontrol ping
running slurmd || slurmd
wait_for 30 "node $host" node_ready || true
if ! node_ready; then  # a node that was down or drained in an earlier life of this machine
  scontrol update nodename="$host" state=resume 2>/dev/null || true
  wait_for 20 "node $host" node_ready
fi
wait_for 20 "accounting (sacct)" sacct -n -X -S now-1minute
echo "slurm cluster up in $(elapsed) s: $(sinfo -h -o '%P %D %c %t' | tr '\n' ';')"
