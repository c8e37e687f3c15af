#!/usr/bin/env bash
# A private Docker engine for the tests (Debian's docker.io): no bridge network (only the
# host and none networks), no iptables, all state under ROOT, stopped by its PID file.
#
#   dockerd.sh up [ROOT]     install docker.io + debootstrap if missing (apt, as root), start
#                            dockerd on unix://ROOT/docker.sock; prints that DOCKER_HOST
#   dockerd.sh down [ROOT]   stop the dockerd started by `up` (images stay in ROOT/data)
set -euo pipefail
cmd=${1:?usage: dockerd.sh up|down [ROOT]}
ROOT=${2:-/tmp/liss-docker}
SOCK=$ROOT/docker.sock PID=$ROOT/dockerd.pid

alive() { [[ -f $PID ]] && kill -0 "$(cat "$PID")" 2>/dev/null; }

case $cmd in
up)
  missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    echo "dockerd.sh: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" >&2 || {
      apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2
    }
  fi
  mkdir -p "$ROOT"
  if ! alive; then
    setsid dockerd --data-root "$ROOT/data" --exec-root "$ROOT/exec" -H "unix://$SOCK" \
      --pidfile "$PID" --iptables=false --ip6tables=false --bridge=none \
      --storage-driver overlay2 </dev/null >"$ROOT/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 100); do
    DOCKER_HOST=unix://$SOCK docker version >/dev/null 2>&1 && break
    sleep 0.2
  done
  DOCKER_HOST=unix://$SOCK docker version >/dev/null || {
    echo "dockerd.sh: the engine did not come up; see $ROOT/dockerd.log" >&2
    tail -5 "$ROOT/dockerd.log" >&2
    exit 1
  }
  echo "unix://$SOCK"
  ;;
down)
  if alive; then
    pid=$(cat "$PID")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if mountpoint -q "$ROOT/exec/netns/default" 2>/dev/null; then
    umount "$ROOT/exec/netns/default"
  fi
  ;;
*)
  echo "usage: dockerd.sh up|down [ROOT]" >&2
  exit 2
  ;;
esac
