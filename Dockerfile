# syntax=docker/dockerfile:1.12
#
# brainmri container image. Research/triage only - not a medical device.
#
# One multi-stage Dockerfile for every service rather than one per services/*/: the API, the
# worker, the trainer and beat are one pip package with one dependency set, and PyTorch is most
# of the image (about 1 GB for CPU, 5 GB for CUDA). Per-service Dockerfiles would build, push and
# store that layer four times and let the copies drift apart. The role is chosen by the command
# (see docker-compose.yml and deploy/k8s), and the HEALTHCHECK adapts to the role it finds.
#
# Two flavours, chosen by the TORCH_FLAVOR build argument:
#   cpu  (default) torch/torchvision CPU wheels from download.pytorch.org: API, CPU workers,
#                  trainer and beat.
#   cuda           the default PyPI wheels, which bundle the CUDA runtime: GPU workers and the
#                  GPU trainer. The host needs the NVIDIA driver and the NVIDIA container toolkit.
#
#   docker build -t brainmri:dev .
#   docker build --build-arg TORCH_FLAVOR=cuda -t brainmri-cuda:dev .
#
# Needs BuildKit (the default builder since Docker 23.0) for the cache and bind mounts.
# No secrets are baked in: every setting arrives as an environment variable at run time.
# No model weights are downloaded: the shipped bundle is package data of `brainmri`.

# The interpreter the project is tested with (.venv of `make test`).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# tini as PID 1: forwards SIGTERM to the service (Celery's warm shutdown, uvicorn's graceful
# stop) and reaps stray children, in Docker and in Kubernetes alike.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-* \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only verify numeric users, and volume
# ownership stays predictable (deploy/k8s uses the same numbers in its securityContext).
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" brainmri \
    && useradd --system --uid "${APP_UID}" --gid brainmri --home-dir /home/brainmri \
        --create-home --shell /usr/sbin/nologin brainmri \
    && install -d -o brainmri -g brainmri -m 0750 /var/lib/brainmri

# ---------------------------------------------------------------------------------------------
# Dependencies only. This layer depends on nothing but pyproject.toml, so editing the source
# never re-downloads PyTorch. The pins come from pyproject.toml itself (no second list to drift).
# For the cpu flavour torch/torchvision are installed first from the CPU index: torch==X there is
# X+cpu, which still satisfies the ==X pins, so the second install keeps it.
FROM base AS deps

ARG TORCH_FLAVOR=cpu
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_VERSION=26.3

WORKDIR /build
COPY pyproject.toml ./

RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    python -m venv "${VIRTUAL_ENV}"; \
    "${VIRTUAL_ENV}/bin/pip" install "pip==${PIP_VERSION}"; \
    "${VIRTUAL_ENV}/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt; \
    case "${TORCH_FLAVOR}" in \
      cpu) \
        grep -E '^(torch|torchvision)==' requirements.txt > torch-requirements.txt; \
        "${VIRTUAL_ENV}/bin/pip" install --index-url "${TORCH_CPU_INDEX_URL}" -r torch-requirements.txt ;; \
      cuda) ;; \
      *) echo "TORCH_FLAVOR must be cpu or cuda, not '${TORCH_FLAVOR}'" >&2; exit 1 ;; \
    esac; \
    "${VIRTUAL_ENV}/bin/pip" install -r requirements.txt; \
    "${VIRTUAL_ENV}/bin/python" -c 'import torch; print("torch", torch.__version__)'

# ---------------------------------------------------------------------------------------------
# The project itself. The source is bind-mounted for this one step instead of COPY'd, so it is
# stored once (in site-packages) and not again in a layer below it; .dockerignore is an
# allowlist, so nothing but the package sources and their metadata reaches the build.
FROM deps AS runtime

RUN --mount=type=bind,target=/src,rw \
    --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    "${VIRTUAL_ENV}/bin/pip" install --no-deps /src; \
    brainmri --help > /dev/null

COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/brainmri-healthcheck

LABEL org.opencontainers.image.title="brainmri" \
      org.opencontainers.image.description="Brain MRI tumor triage service. Research/triage only - not a medical device." \
      org.opencontainers.image.licenses="MIT"

# Scratch space and model cache of workers and the trainer; mount a volume here.
ENV BRAINMRI_DATA_DIR=/var/lib/brainmri \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/brainmri

USER 10001:10001
WORKDIR /home/brainmri
EXPOSE 8000

# Role-aware: `brainmri serve` -> GET /healthz; worker/trainer -> the process runs and its
# database and broker answer; beat -> the broker answers. See deploy/docker/healthcheck.py.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["brainmri-healthcheck"]

ENTRYPOINT ["tini", "--"]
# Without BRAINMRI_BROKER_URL this is embedded mode: one container with its own worker.
CMD ["brainmri", "serve", "--host", "0.0.0.0", "--port", "8000"]
