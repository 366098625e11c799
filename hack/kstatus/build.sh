#!/usr/bin/env bash
# Builds the kstatus program (main.go, on the cli-utils release pinned in go.mod) into the same cache outside
# the repository as the control plane, and prints that directory. The directory is keyed by the cli-utils
# version and a hash of main.go, go.mod and go.sum, so a change to any of them builds anew and a second run
# returns at once. Static, like the other tools.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

version="$(awk '$1=="sigs.k8s.io/cli-utils" && $2 ~ /^v/ {print $2; exit}' go.mod)"
sources="$(cat main.go go.mod go.sum | sha256sum | cut -c1-12)"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"
out="$cache_root/kstatus/${version}-${sources}"

if [[ -x "$out/kstatus" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
echo "building kstatus on cli-utils $version" >&2
go build -trimpath -ldflags="-s -w" -o "$out/kstatus.tmp" .
mv "$out/kstatus.tmp" "$out/kstatus"
echo "built kstatus in $(( $(date +%s) - start ))s" >&2
echo "$out"
