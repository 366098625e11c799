#!/usr/bin/env bash
# Builds the argocd-health program (main.go, on the Argo CD release pinned in go.mod) into the same cache
# outside the repository as the control plane, and prints that directory. The directory is keyed by the
# Argo CD version and a hash of its Go files, go.mod and go.sum, so a change to any of them builds anew and a
# second run returns at once. Static, like the other tools.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

argocd_version="$(awk '$1=="github.com/argoproj/argo-cd/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)"
sources="$(cat ./*.go go.mod go.sum | sha256sum | cut -c1-12)"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"
out="$cache_root/argocd-health/${argocd_version}-${sources}"

if [[ -x "$out/argocd-health" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
echo "building argocd-health on Argo CD $argocd_version" >&2
go build -trimpath -ldflags="-s -w" -o "$out/argocd-health.tmp" .
mv "$out/argocd-health.tmp" "$out/argocd-health"
echo "built argocd-health in $(( $(date +%s) - start ))s" >&2
echo "$out"
