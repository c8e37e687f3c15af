#!/usr/bin/env bash
# Start a single-host SLURM test cluster: Debian 12 slurm-wlm 22.05 + munge, on loopback,
# every file (config, keys, sockets, spool, logs, PID files) under ROOT. Idempotent: with
# everything up it returns at once.
#
#   bash tests/integration/cluster/slurm-up.sh ROOT       then: export SLURM_CONF=ROOT/slurm.conf
#   bash tests/integration/cluster/slurm-down.sh ROOT     stops what this started, by PID file
#
# Needs root and: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# One node, "localhost", with every CPU of the machine and DefMemPerCPU (so array tasks run
# side by side). No accounting: `liss sweep status` does not use sacct. Ports: slurmctld
# $SLURM_TEST_PORT (default 6817), slurmd the next one.
set -euo pipefail
ROOT=$(realpath -m "${1:?usage: slurm-up.sh ROOT}")
PORT=${SLURM_TEST_PORT:-6817}
export SLURM_CONF=$ROOT/slurm.conf
for tool in munged mungekey slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "slurm-up: $tool is not installed" >&2; exit 3; }
done

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mkdir -p "$ROOT"/{ctld,log,munge}
chmod 755 "$ROOT"                       # munged runs as user munge and needs to get in
chown munge:munge "$ROOT/munge"; chmod 700 "$ROOT/munge"

# munge: its own key and socket, run as user munge
MSOCK=$ROOT/munge/munge.socket.2
if [ ! -s "$ROOT/munge/munge.key" ]; then
  mungekey -c -k "$ROOT/munge/munge.key"
  chown munge:munge "$ROOT/munge/munge.key"; chmod 400 "$ROOT/munge/munge.key"
fi
munge_ok() { munge -n -S "$MSOCK" 2>/dev/null | unmunge -S "$MSOCK" >/dev/null 2>&1; }
if ! munge_ok; then
  runuser -u munge -- munged --force -S "$MSOCK" --key-file="$ROOT/munge/munge.key" \
    --num-threads=4 --pid-file="$ROOT/munge/munged.pid" --log-file="$ROOT/munge/munged.log" \
    --seed-file="$ROOT/munge/munged.seed"
  for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || { echo "slurm-up: munged did not start, see $ROOT/munge/munged.log" >&2; exit 1; }
fi

MEM=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') - 1024 ))
CONF=$(cat <<CONF
ClusterName=liss-test
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/spool-%n
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd-%n.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerParameters=sched_min_interval=0,bf_interval=1
ReturnToService=2
SlurmdParameters=config_overrides
MaxArraySize=1001
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
)
if [ ! -f "$SLURM_CONF" ] || [ "$(cat "$SLURM_CONF")" != "$CONF" ]; then
  printf '%s\n' "$CONF" > "$SLURM_CONF"       # changed: restart the daemons on it
  for f in "$ROOT/slurmd-localhost.pid" "$ROOT/slurmctld.pid"; do
    if alive "$f"; then kill "$(cat "$f")"; while alive "$f"; do sleep 0.1; done; fi
  done
fi
alive "$ROOT/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
alive "$ROOT/slurmd-localhost.pid" || slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 150); do
  [ "$(sinfo -h -o '%t' 2>/dev/null)" = idle ] && break; sleep 0.2
done
[ "$(sinfo -h -o '%t' 2>/dev/null)" = idle ] || {
  echo "slurm-up: the node did not become idle; see $ROOT/log" >&2; sinfo >&2 || true; exit 1; }
sinfo
