#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the pinned modules in go.mod into a
# cache outside the repository, keyed by version, and prints that directory. A second run finds the binaries
# and returns at once; a cache made before one of them was added builds only what it lacks. Static binaries,
# upstream build tags, version ldflags so `kubectl version` tells the truth.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

k8s_version="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' go.mod)"
etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' go.mod)"
cache_root="${GPU_MODEL_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-model-operator}"
out="$cache_root/controlplane/${k8s_version}-etcd${etcd_version}"

binaries=(etcd kube-apiserver kube-controller-manager kubectl)
missing=()
for name in "${binaries[@]}"; do
  [[ -x "$out/$name" ]] || missing+=("$name")
done
if (( ${#missing[@]} == 0 )); then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
cpkg=k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in $pkg $cpkg; do
  ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
start=$(date +%s)
build() { # name package [extra ldflags]
  [[ " ${missing[*]} " == *" $1 "* ]] || return 0
  echo "building $1 ($2)" >&2
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ldflags ${3:-}" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
}
build etcd go.etcd.io/etcd/server/v3 \
  "-X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
echo "built control plane in $(( $(date +%s) - start ))s" >&2
echo "$out"
