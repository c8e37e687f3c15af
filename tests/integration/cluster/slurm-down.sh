#!/usr/bin/env bash
# Stop the test cluster that slurm-up.sh started under ROOT, by its PID files only, and wait
# for the daemons to exit (so a new cluster can take the ports at once).
ROOT=${1:?usage: slurm-down.sh ROOT}
for f in "$ROOT/slurmd-localhost.pid" "$ROOT/slurmctld.pid" "$ROOT/munge/munged.pid"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "stopped $(basename "$f" .pid) ($pid)"
  fi
done
true
