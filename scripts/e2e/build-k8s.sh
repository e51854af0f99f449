#!/usr/bin/env bash
# Build the pinned single-node Kubernetes (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl, etcd) and a tiny sandbox ("pause") binary from the Go
# module proxy into a cache keyed by version. scripts/e2e/k8s.sh runs these; so does CI.
#
#   scripts/e2e/build-k8s.sh        prints the directory holding the binaries (last line)
#
# The commands live in k8s.io/kubernetes, whose go.mod points its staging modules
# (k8s.io/api, client-go, ...) at local paths; the wrapper module (scripts/lib/gobuild.sh)
# replaces each staging module with its published v0.<minor>.<patch> tag.
# A cold build takes ~16 CPU-minutes and ~6 GB of Go caches; the caches live in a
# temporary directory removed afterwards, only the binaries (~0.5 GB) are kept.
set -euo pipefail

# The one place the cluster's versions are pinned (scripts/e2e/k8s.sh asks with
# --print-versions).
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
out="$cache/k8s/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd pause)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"
# shellcheck source=../lib/gobuild.sh
source "$here/../lib/gobuild.sh"

if [ "${1:-}" = "--print-versions" ]; then
  printf 'K8S_VERSION=%s\nETCD_VERSION=%s\nK8S_BIN=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$out"
  exit 0
fi

if go_build_present "$out" "${binaries[@]}"; then
  log "Kubernetes $K8S_VERSION and etcd $ETCD_VERSION present in $out"
  echo "$out"
  exit 0
fi

go_build_begin "$out" Kubernetes
export GOTOOLCHAIN=local
started=$(date +%s)

k8s_minor=$(echo "$K8S_VERSION" | cut -d. -f2)
staging_version="v0.${K8S_VERSION#v1.}"  # v1.37.2 -> v0.37.2
staging_modules=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client cri-streaming csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
  kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver streaming)
commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

pkgs=()
for c in "${commands[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
go_wrapper_module "$work/kubernetes" 1.26.0 k8s.io/kubernetes "$K8S_VERSION" "${pkgs[@]}"
{
  echo
  echo "replace ("
  for m in "${staging_modules[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging_version"; done
  echo ")"
} >>"$work/kubernetes/go.mod"

mkdir -p "$work/kubernetes/pause"
# The sandbox container of every pod only has to hold the pod's namespaces open and leave
# on SIGTERM/SIGINT; there is no registry to pull registry.k8s.io/pause from.
cat >"$work/kubernetes/pause/main.go" <<'EOF'
// Command pause holds a pod sandbox's namespaces open until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
EOF

build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitVersion=$K8S_VERSION"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

log "building Kubernetes $K8S_VERSION (~16 CPU-minutes on a cold machine)"
(
  cd "$work/kubernetes"
  go mod tidy
  go build -trimpath -ldflags "$ldflags" -o "$staging/" "${pkgs[@]}"
  go build -trimpath -ldflags "-s -w" -o "$staging/pause" ./pause
)

log "building etcd $ETCD_VERSION"
go_wrapper_module "$work/etcd" 1.26.0 go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
(
  cd "$work/etcd"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
)

go_build_done
log "built in $(($(date +%s) - started)) s: $("$out/kubectl" version --client 2>/dev/null | head -n 1), etcd $("$out/etcd" --version | head -n 1)"
echo "$out"
