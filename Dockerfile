# syntax=docker/dockerfile:1
# The operator's image: the wheel built from this repository plus the hash-pinned dependencies of
# requirements.lock, in a virtual environment, run as a non-root user with `gpu-model-operator run`.
#
#   docker build -t gpu-model-operator:0.1.0 .
#
# tests/integration/test_packaging.py copies what the build stage copies and runs its install step (the RUN
# that builds the wheel) outside Docker, then runs the installed command; keep that step one RUN instruction.
# After changing dependencies in pyproject.toml, regenerate the lock:
#
#   uv pip compile pyproject.toml -o requirements.lock --generate-hashes --universal --python-version 3.11

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/gpu-model-operator
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY operator/ operator/
# Dependencies only from the lock, each checked against its hash, wheels only (the slim image has no
# compiler); then the operator's own wheel without dependencies; then a consistency check of the result.
RUN uv build --wheel --out-dir dist . \
 && uv venv --python 3.11 "$VIRTUAL_ENV" \
 && uv pip install --python "$VIRTUAL_ENV/bin/python" --require-hashes --no-deps --no-build -r requirements.lock \
 && uv pip install --python "$VIRTUAL_ENV/bin/python" --no-deps --no-build dist/gpu_model_operator-*.whl \
 && uv pip check --python "$VIRTUAL_ENV/bin/python"

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="gpu-model-operator" \
      org.opencontainers.image.description="Kubernetes operator that serves deep-learning models on GPUs from GpuModelDeployment resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"
RUN groupadd --system --gid 10001 gmo \
 && useradd --system --uid 10001 --gid gmo --home-dir /home/gmo --create-home --shell /usr/sbin/nologin gmo
COPY --from=build /opt/gpu-model-operator /opt/gpu-model-operator
# HOME, /tmp and the state directory are emptyDir volumes in the Deployment (read-only root filesystem).
# MALLOC_ARENA_MAX: caps glibc at 2 malloc arenas; by default each SDK worker thread may grow its own, which
# freed memory rarely leaves.
ENV PATH=/opt/gpu-model-operator/bin:$PATH \
    VIRTUAL_ENV=/opt/gpu-model-operator \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    HOME=/home/gmo
USER 10001:10001
WORKDIR /home/gmo
# 8080: kopf's /healthz (probes); 9090: Prometheus /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["gpu-model-operator", "run"]
