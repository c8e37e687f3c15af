# The liss training image: the liss package with its DALI extra on a CUDA PyTorch base image.
#
#   docker build -t liss .
#   docker build --build-arg BASE_IMAGE=pytorch/pytorch:<tag> -t liss .
#
# torch and torchvision come from the base image. pip installs everything else under a
# constraints file that pins them to the base's builds, so it never fetches a second PyTorch.
# The container runs docker/entrypoint.sh: the cluster's environment in, `liss train` (or
# torchrun) out, the trainer's exit status back (75 = preempted, run again). docs/docker.md.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml docker/requirements.py /tmp/build/
RUN python /tmp/build/requirements.py pins torch torchvision >/tmp/build/constraints.txt \
 && python /tmp/build/requirements.py deps /tmp/build/pyproject.toml dali \
      >/tmp/build/requirements.txt \
 && python -m pip install --no-cache-dir -c /tmp/build/constraints.txt \
      -r /tmp/build/requirements.txt

COPY pyproject.toml README.md /tmp/build/src/
COPY liss /tmp/build/src/liss
COPY launch /tmp/build/src/launch
COPY configs /tmp/build/src/configs
COPY k8s /tmp/build/src/k8s
RUN python -m pip install --no-cache-dir --no-deps -c /tmp/build/constraints.txt \
      /tmp/build/src \
 && python -c "import liss.cli, nvidia.dali, torch, torchvision; \
      print('liss on torch', torch.__version__, 'with DALI', nvidia.dali.__version__)" \
 && rm -rf /tmp/build \
 && useradd --no-log-init --create-home --uid 10001 --user-group liss

COPY configs /opt/liss/configs
COPY docker/entrypoint.sh /opt/liss/docker/entrypoint.sh
RUN chmod 0755 /opt/liss/docker/entrypoint.sh

LABEL org.opencontainers.image.title="liss" \
      org.opencontainers.image.description="LiSS trainer: CycleGAN + self-supervised tasks"
WORKDIR /opt/liss
USER 10001:10001
ENV HOME=/home/liss
ENTRYPOINT ["/opt/liss/docker/entrypoint.sh"]
