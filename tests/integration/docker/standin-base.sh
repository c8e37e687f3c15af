#!/usr/bin/env bash
# Build the test's STAND-IN for the Dockerfile's PyTorch base image without any image
# registry, and load it into the engine at $DOCKER_HOST; prints its tag (naming the recipe).
#
#   standin-base.sh [CACHE]          (default CACHE /tmp/liss-docker-cache)
#
# What it is: Debian bookworm (debootstrap minbase, Python 3.11) with a venv at /opt/venv on
# PATH holding torch 2.14.1 + torchvision 0.29.1 from the wheels on this machine
# ($TORCH_WHEELS, default /opt/pypi-more/files) and the CUDA libraries they link against
# (torch will not import without them; no GPU is used). Like pytorch/pytorch it ships torch
# preinstalled with pip on PATH, which is all the Dockerfile relies on. It is not that image:
# no conda, no CUDA toolkit, Debian instead of Ubuntu.
#
# It also carries this machine's CA bundle ($CA_BUNDLE, default the system's), with PIP_CERT
# pointing at it, so pip inside `docker build` trusts what the host trusts (these machines
# reach PyPI through a TLS-inspecting proxy).
#
# Cached: the finished rootfs in CACHE/rootfs-<recipe> (a change to this script or to the
# wheel set makes a new recipe); nothing at all is done when the engine has the tag already.
# Network: debootstrap reads the Debian mirror; pip downloads the torch dependencies that
# are not on this machine (triton, cuda-bindings, nvidia-cuda-runtime and small pure-Python
# packages, ~300 MB) from PyPI into CACHE/wheels.
set -euo pipefail
CACHE=${1:-/tmp/liss-docker-cache}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/pypi-more/files}
PYTHON=${PYTHON:-python3}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
here=$(cd "$(dirname "$0")" && pwd)

log() { printf 'standin-base: %s\n' "$*" >&2; }

shopt -s nullglob
local_wheels=("$TORCH_WHEELS"/torch-2.14.1-cp311-*.whl
  "$TORCH_WHEELS"/torchvision-0.29.1-cp311-*.whl "$TORCH_WHEELS"/nvidia_*.whl
  "$TORCH_WHEELS"/cuda_toolkit-13.0.3.0-*.whl)
shopt -u nullglob
((${#local_wheels[@]} >= 3)) || { log "no torch 2.14.1 wheels in $TORCH_WHEELS"; exit 1; }
# torch's other dependencies, from PyPI: all of them, as in a real PyTorch image, so that
# pip in the Dockerfile finds torch's requirements met and leaves the torch stack alone
pypi=(nvidia-cuda-runtime==13.0.96 "triton~=3.8.0" "cuda-bindings>=13.0.3,<14" filelock
  typing-extensions "sympy>=1.13.3" mpmath "networkx>=2.5.1" jinja2 markupsafe "fsspec>=0.8.5"
  "setuptools>=77.0.3" numpy pillow)

recipe=$( { cat "$here/standin-base.sh"; printf '%s\n' "${local_wheels[@]##*/}" "${pypi[@]}"; } |
  sha256sum | cut -c1-12)
ca=$(sha256sum "$CA_BUNDLE" | cut -c1-6)
tag=liss-test/pytorch-standin:$recipe-$ca
if docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag is loaded already"
  echo "$tag"
  exit 0
fi

rootfs=$CACHE/rootfs-$recipe
if [[ ! -f $rootfs.done ]]; then
  log "building the rootfs in $rootfs (debootstrap + torch wheels, a few minutes)"
  rm -rf "$CACHE"/rootfs-* "$CACHE/wheels"  # older recipes
  mkdir -p "$CACHE/wheels"
  "$PYTHON" -m pip download --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --dest "$CACHE/wheels" "${pypi[@]}" >"$CACHE/pip-download.log" 2>&1 || {
    log "pip download failed; see $CACHE/pip-download.log"
    exit 1
  }
  mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources \
    2>/dev/null | head -1)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 || {
    log "debootstrap failed; see $CACHE/debootstrap.log"
    exit 1
  }
  mkdir -p "$rootfs/tmp/wheels"
  # hard links when /tmp and the wheels share a file system (no copy of ~3 GB), else copies
  cp -l "${local_wheels[@]}" "$CACHE"/wheels/*.whl "$rootfs/tmp/wheels/" 2>/dev/null ||
    cp "${local_wheels[@]}" "$CACHE"/wheels/*.whl "$rootfs/tmp/wheels/"
  chroot "$rootfs" /bin/sh -c 'python3 -m venv /opt/venv &&
    /opt/venv/bin/pip install --quiet --no-index --no-deps --disable-pip-version-check \
      /tmp/wheels/*.whl && /opt/venv/bin/pip check'
  rm -rf "$rootfs/tmp/wheels" "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  touch "$rootfs.done"
fi

log "importing $rootfs as $tag"
cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  - "$tag" >/dev/null
echo "$tag"
