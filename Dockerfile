# syntax=docker/dockerfile:1
# The operator's image: the wheel built from this repository plus the hash-pinned dependencies of
# requirements.lock, in a virtual environment, run as a non-root user with `gpu-model-operator run`.
#
#   docker build -t gpu-model-operator:0.1.0 .
#   make image        # buildah, on a Debian base made with debootstrap (hack/image/build.sh)
#
# The base is any Debian-family Python 3.11 image (PYTHON_IMAGE): the official python:3.11 slim by default; `make
# image` passes one it makes from Debian's own packages. tests/integration/test_packaging.py replays the build
# stage's steps outside a container (its COPYs, then every RUN but the one that installs uv) and
# tests/e2e/test_image.py builds the image and runs it. After changing dependencies in pyproject.toml, regenerate
# the lock:
#
#   uv pip compile pyproject.toml -o requirements.lock --generate-hashes --universal --python-version 3.11

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_BREAK_SYSTEM_PACKAGES: uv, the build tool, goes into the base's own Python (Debian's marks it externally
# managed); only this stage has it.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    VIRTUAL_ENV=/opt/gpu-model-operator
# Where the downloads go through a TLS-inspecting proxy, its CA bundle as the build secret ca-bundle (docker build
# or buildah build --secret id=ca-bundle,src=/path/ca.crt; hack/image/build.sh passes the host's): mounted for
# these steps only, never in a layer. Without it, the base's own CAs.
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# The dependencies first, from the lock alone, each checked against its hash, wheels only (the slim image has no
# compiler): this layer is built again only when requirements.lock (or the base) changes, not for every change to
# the operator's code.
COPY requirements.lock ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
 && uv venv --python 3.11 "$VIRTUAL_ENV" \
 && uv pip install --python "$VIRTUAL_ENV/bin/python" --require-hashes --no-deps --no-build -r requirements.lock
# Then the operator's own wheel (its build backend, setuptools, is downloaded too) without dependencies, and a
# consistency check of the result.
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
 && uv build --wheel --out-dir dist . \
 && uv pip install --python "$VIRTUAL_ENV/bin/python" --no-deps --no-build dist/gpu_model_operator-*.whl \
 && uv pip check --python "$VIRTUAL_ENV/bin/python"

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
# The base's full name, for the label (make image names its own Debian base).
ARG BASE_NAME=docker.io/library/${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="gpu-model-operator" \
      org.opencontainers.image.description="Kubernetes operator that serves deep-learning models on GPUs from GpuModelDeployment resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_NAME}"
RUN groupadd --system --gid 10001 gmo \
 && useradd --system --uid 10001 --gid gmo --home-dir /home/gmo --create-home --shell /usr/sbin/nologin gmo
COPY --from=build /opt/gpu-model-operator /opt/gpu-model-operator
COPY LICENSE /usr/share/doc/gpu-model-operator/copyright
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
# 8080: kopf's /healthz (probes); 9090: Prometheus /metrics (on loopback unless GMO_METRICS_BIND_ADDRESS says).
EXPOSE 8080 9090
ENTRYPOINT ["gpu-model-operator", "run"]
