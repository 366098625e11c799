#!/usr/bin/env bash
# Builds helm from the release pinned in go.mod into the same cache outside the repository as the control
# plane, keyed by version, and prints that directory. A second run finds the binary and returns at once.
# Static, with the release's version ldflags (as Helm's Makefile sets them for a tagged build), so
# `helm version` prints the release.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

version="$(awk '$1=="require" && $2=="helm.sh/helm/v4"{print $3; exit}' go.mod)"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"
out="$cache_root/helm/$version"

if [[ -x "$out/helm" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

pkg=helm.sh/helm/v4/internal/version
ldflags="-s -w -X $pkg.version=$version -X $pkg.metadata= -X $pkg.gitTreeState=clean"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
echo "building helm $version" >&2
go build -trimpath -ldflags="$ldflags" -o "$out/helm.tmp" helm.sh/helm/v4/cmd/helm
mv "$out/helm.tmp" "$out/helm"
echo "built helm in $(( $(date +%s) - start ))s" >&2
echo "$out"
