#!/usr/bin/env bash
# Container entrypoint: turn the cluster's environment into `liss train` processes, one per
# GPU, and hand the trainer's exit status back to the orchestrator.
#
#   entrypoint.sh [CONFIG] [key=value ...]        (the arguments of `liss train`)
#
# Where the world comes from, first match wins:
#   1. RANK and WORLD_SIZE set (an outer torchrun, or set by hand): `liss train` as is.
#   2. A SLURM task (SLURM_PROCID set, LISS_NPROC_PER_NODE not set; srun starts one task per
#      GPU): RANK=SLURM_PROCID, WORLD_SIZE=SLURM_NTASKS, LOCAL_RANK=SLURM_LOCALID, and
#      MASTER_ADDR the first host of SLURM_JOB_NODELIST unless it is set.
#   3. One container per node (docker run, a Kubernetes Indexed Job, one SLURM task per node):
#        nodes       LISS_NNODES, else SLURM_NNODES, else 1
#        node rank   LISS_NODE_RANK, else JOB_COMPLETION_INDEX, else SLURM_NODEID, else 0
#        processes   LISS_NPROC_PER_NODE, else the visible GPUs (nvidia-smi), else 1
#        master      MASTER_ADDR (required for several nodes), MASTER_PORT (default 29500)
#      One process in all runs `liss train` itself; more run `torchrun ... -m liss train`.
#
# Exit status: the trainer's; 75 means "preempted after a checkpoint: run me again" and
# `train.resume=auto` continues from there. `liss train` alone is exec'd, so its status is the
# container's. torchrun reports any worker failure as 1, so under torchrun this script
# forwards SIGTERM/SIGUSR1/SIGUSR2 to it as SIGTERM (torchrun relays it to the workers, which
# checkpoint and exit 75) and turns a non-zero status after such a signal into 75.
#
# LISS_RUN_DIR + LISS_FRESH_TOKEN (set by the Kubernetes launcher for `--force`): before the
# first attempt of a submission, rank 0 renames an existing run folder to
# <folder>.replaced-<time>, so the point starts from scratch; retries of the same submission
# (same token) keep the folder and resume from its checkpoints.
set -euo pipefail

EXIT_PREEMPTED=75

log() { printf 'liss-entrypoint: %s\n' "$*" >&2; }
die() { log "${*:2}"; exit "$1"; }  # die CODE MESSAGE: 2 = bad settings (not worth a retry)

uint() {  # uint NAME VALUE: VALUE must be a non-negative integer
  [[ $2 =~ ^[0-9]+$ ]] || die 2 "$1 must be a non-negative integer, got '$2'"
}

first_host() {  # the first host of a SLURM node list: "gpu[07-09,12],cpu1" -> gpu07
  local list=$1 prefix rest
  prefix=${list%%[\[,]*}
  if [[ ${list:${#prefix}:1} == "[" ]]; then
    rest=${list:${#prefix}+1}
    printf '%s%s\n' "$prefix" "${rest%%[-,\]]*}"
  else
    printf '%s\n' "$prefix"
  fi
}

visible_gpus() {
  local n=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  echo $((n > 0 ? n : 1))
}

fresh_start() {  # see LISS_FRESH_TOKEN above; called by rank 0 only
  [[ -n ${LISS_FRESH_TOKEN:-} && -n ${LISS_RUN_DIR:-} ]] || return 0
  local dir=$LISS_RUN_DIR mark=$LISS_RUN_DIR/.liss-fresh-token
  if [[ -d $dir && $(cat "$mark" 2>/dev/null || true) != "$LISS_FRESH_TOKEN" ]]; then
    local aside
    aside="$dir.replaced-$(date +%Y%m%d-%H%M%S)"
    log "--force: keeping the old run folder as $aside"
    mv "$dir" "$aside"
  fi
  mkdir -p "$dir"
  printf '%s\n' "$LISS_FRESH_TOKEN" >"$mark"
}

wait_for_master() {  # Kubernetes publishes a pod's DNS name only once the pod has an address
  local deadline=$((SECONDS + ${LISS_MASTER_WAIT_S:-600}))
  until getent hosts "$MASTER_ADDR" >/dev/null; do
    ((SECONDS < deadline)) || die 1 "master address $MASTER_ADDR does not resolve"
    sleep 2
  done
}

child=
preempted=0
interrupted=0
# shellcheck disable=SC2317  # called by the traps below
forward() {  # forward SIGNAL [preemption]: relay to the child, remember a preemption
  interrupted=1
  if [[ ${2:-} == preemption ]]; then preempted=1; fi
  if [[ -n $child ]]; then kill -s "$1" "$child" 2>/dev/null || true; fi
}

supervise() {  # run "$@" as a child, relay signals, exit with its status (75 if preempted)
  trap 'forward TERM preemption' TERM USR1 USR2
  trap 'forward INT' INT
  "$@" &
  child=$!
  local status
  while :; do
    interrupted=0
    status=0
    wait "$child" || status=$?
    ((interrupted)) || break  # a trapped signal ends `wait` early: wait again
  done
  if ((preempted && status != 0)); then
    log "preempted: torchrun exited $status after the preemption signal; exiting $EXIT_PREEMPTED"
    exit "$EXIT_PREEMPTED"
  fi
  exit "$status"
}

# 1. the world is given
if [[ -n ${RANK:-} && -n ${WORLD_SIZE:-} ]]; then
  log "rank $RANK of $WORLD_SIZE (RANK/WORLD_SIZE given)"
  [[ $RANK == 0 ]] && fresh_start
  exec liss train "$@"
fi

# 2. one SLURM task per GPU
if [[ -n ${SLURM_PROCID:-} && -z ${LISS_NPROC_PER_NODE:-} ]]; then
  export RANK=$SLURM_PROCID WORLD_SIZE=${SLURM_NTASKS:-1} LOCAL_RANK=${SLURM_LOCALID:-0}
  MASTER_ADDR=${MASTER_ADDR:-$(first_host "${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-127.0.0.1}}")}
  export MASTER_ADDR MASTER_PORT=${MASTER_PORT:-29500}
  log "rank $RANK of $WORLD_SIZE, local rank $LOCAL_RANK (SLURM task)," \
    "master $MASTER_ADDR:$MASTER_PORT"
  [[ $RANK == 0 ]] && fresh_start
  exec liss train "$@"
fi

# 3. one container per node
nnodes=${LISS_NNODES:-${SLURM_NNODES:-1}}
node_rank=${LISS_NODE_RANK:-${JOB_COMPLETION_INDEX:-${SLURM_NODEID:-0}}}
nproc=${LISS_NPROC_PER_NODE:-$(visible_gpus)}
uint "the node count (LISS_NNODES)" "$nnodes"
uint "the node rank (LISS_NODE_RANK / JOB_COMPLETION_INDEX)" "$node_rank"
uint LISS_NPROC_PER_NODE "$nproc"
((nnodes >= 1 && nproc >= 1)) || die 2 "need at least one node and one process per node"
((node_rank < nnodes)) || die 2 "node rank $node_rank is not below the node count $nnodes"
((node_rank == 0)) && fresh_start

if ((nnodes * nproc == 1)); then
  log "node 0 of 1, 1 process: liss train"
  exec liss train "$@"
fi
if ((nnodes > 1)); then
  [[ -n ${MASTER_ADDR:-} ]] || die 2 "$nnodes nodes need MASTER_ADDR (the node-rank-0 host)"
  wait_for_master
fi
master=${MASTER_ADDR:-127.0.0.1}
port=${MASTER_PORT:-29500}
# torchrun's grace period between relaying SIGTERM and SIGKILL: time to write a checkpoint
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-90}
log "node $node_rank of $nnodes, $nproc process(es) per node, master $master:$port: torchrun"
supervise torchrun --nnodes="$nnodes" --node_rank="$node_rank" --nproc_per_node="$nproc" \
  --master_addr="$master" --master_port="$port" -m liss train "$@"
