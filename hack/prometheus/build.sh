#!/usr/bin/env bash
# Builds promtool and prometheus from the release pinned in go.mod into the same cache outside the repository as
# the control plane, keyed by version, and prints that directory. A second run finds the binaries and returns at
# once. One `go build` for both (they share most packages), static, with the release's version ldflags (as
# Prometheus's Makefile sets them), and with `remove_all_sd`: the tests configure their targets statically, so the
# service discoveries (clouds, Consul, ...) are left out, which Prometheus's plugins/ build tags allow.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

module="$(awk '$1=="require" && $2=="github.com/prometheus/prometheus"{print $3; exit}' go.mod)"
# v0.316.0 is Prometheus 3.16.0.
release="$(echo "$module" | sed -E 's/^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$/\1.\2.\3/; s/\.0([0-9])\./.\1./')"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"
out="$cache_root/prometheus/$module"

if [[ -x "$out/promtool" && -x "$out/prometheus" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out/tmp"

pkg=github.com/prometheus/common/version
ldflags="-s -w -X $pkg.Version=$release -X $pkg.Branch=release -X $pkg.Revision=$module"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
echo "building promtool and prometheus $release" >&2
go build -tags remove_all_sd -trimpath -ldflags="$ldflags" -o "$out/tmp/" \
  github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/prometheus/cmd/prometheus
mv "$out/tmp/promtool" "$out/tmp/prometheus" "$out/"
rmdir "$out/tmp"
echo "built promtool and prometheus in $(( $(date +%s) - start ))s" >&2
echo "$out"
