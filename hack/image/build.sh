#!/usr/bin/env bash
# `make image`: the operator's image built from the Dockerfile with buildah (--isolation chroot: no daemon, no
# cgroups needed), on a base made from Debian's own packages with debootstrap (Debian bookworm's Python 3.11: the
# Dockerfile's PYTHON_IMAGE). Prints the image's name.
#
# Cached outside the repository, keyed so that a changed input builds again:
# - the base, by the suite and its packages (this script's BASE_* lines): a tarball in the cache, and an image in
#   buildah's storage; debootstrap runs only when neither is there;
# - the build stage's layers, by buildah's own layer cache (--layers): the one that installs the dependencies is
#   keyed by requirements.lock and the base, so a change to the operator's code rebuilds only its wheel and the
#   final stage.
#
# Needs buildah and debootstrap: installed with apt-get where they are missing and this runs as root, else it says
# what to install. Elsewhere, build with Docker (README, Install on a cluster).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
BASE_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

version="$(awk -F'"' '/^version = /{print $2; exit}' "$root/pyproject.toml")"
image="${GMO_IMAGE:-localhost/gpu-model-operator:$version}"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"

missing=()
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
  else
    echo "make image needs ${missing[*]}: install them (Debian, Ubuntu: sudo apt-get install buildah debootstrap)," >&2
    echo "or build the image with Docker: docker build -t gpu-model-operator:$version ." >&2
    exit 1
  fi
fi

key="$(printf '%s %s' "$BASE_SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-12)"
base="localhost/gpu-model-operator-base:$BASE_SUITE-$key"
tarball="$cache_root/image/base-$BASE_SUITE-$key.tar"
start=$(date +%s)
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  if [[ ! -f $tarball ]]; then
    echo "making the base: debootstrap $BASE_SUITE with $BASE_PACKAGES" >&2
    mkdir -p "$(dirname "$tarball")"
    rootfs="$(mktemp -d "$cache_root/image/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$rootfs" "$BASE_MIRROR" >&2
    # What an image does not need: the downloaded packages and the package lists (apt-get update makes them again).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
  fi
  container="$(buildah from scratch)"
  buildah add --quiet "$container" "$tarball" / >&2
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash \
    --label "org.opencontainers.image.description=Debian $BASE_SUITE (debootstrap) with $BASE_PACKAGES" "$container"
  buildah commit --quiet --rm "$container" "$base" >&2
  echo "base $base ready in $(($(date +%s) - start))s" >&2
fi

# The downloads trust what the host trusts (a TLS-inspecting proxy's CA included): its CA bundle is the build
# secret ca-bundle, mounted for the steps that download, never in a layer.
ca="${GMO_BUILD_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
trust=()
if [[ -f $ca ]]; then
  trust=(--secret "id=ca-bundle,src=$ca")
fi
buildah build --isolation chroot --layers --quiet \
  --build-arg PYTHON_IMAGE="$base" --build-arg BASE_NAME="$base" --build-arg VERSION="$version" "${trust[@]}" \
  --tag "$image" --file "$root/Dockerfile" "$root" >&2
echo "built $image in $(($(date +%s) - start))s" >&2
echo "$image"
