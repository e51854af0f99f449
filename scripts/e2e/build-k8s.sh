#!/usr/bin/env bash
# Build the pinned single-node Kubernetes (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl, etcd) and a tiny sandbox ("pause") binary from the Go
# module proxy into a cache keyed by version. scripts/k8s.sh runs these; so does CI.
#
#   scripts/build-k8s.sh        prints the directory holding the binaries (last line)
#
# No release binaries can be downloaded on our CI machines, but the Go module proxy is
# reachable. The commands live in k8s.io/kubernetes, whose go.mod points its staging
# modules (k8s.io/api, client-go, ...) at local paths; a wrapper module requires it and
# replaces each staging module with its published v0.<minor>.<patch> tag, and its `tool`
# block is what lets `go mod tidy` resolve the commands' dependency graphs.
# A cold build takes ~16 CPU-minutes and ~6 GB of Go caches; the caches live in a
# temporary directory removed afterwards, only the binaries (~0.5 GB) are kept.
set -euo pipefail

# The one place the cluster's versions are pinned (scripts/k8s.sh sources this file with
# --print-versions to learn them).
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
out="$cache/k8s/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd pause)

log() { printf '[build-k8s] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print-versions" ]; then
  printf 'K8S_VERSION=%s\nETCD_VERSION=%s\nK8S_BIN=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$out"
  exit 0
fi

complete() {
  [ -f "$out/.complete" ] || return 1
  local b
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if complete; then
  log "Kubernetes $K8S_VERSION and etcd $ETCD_VERSION present in $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { log "Go is needed to build Kubernetes"; exit 1; }

work=$(mktemp -d /tmp/merge-job-build-k8s.XXXXXX)
cleanup() {
  # The module cache is read-only by design; make it removable first.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export GOCACHE="$work/gocache" GOMODCACHE="$work/gomodcache" GOTOOLCHAIN=local CGO_ENABLED=0
staging="$out.partial"
rm -rf "$staging"
mkdir -p "$staging"
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

mkdir -p "$work/kubernetes" "$work/etcd" "$work/kubernetes/pause"
{
  echo "module merge-job.local/kubernetes"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "tool ("
  for c in "${commands[@]}"; do echo "	k8s.io/kubernetes/cmd/$c"; done
  echo ")"
  echo
  echo "replace ("
  for m in "${staging_modules[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging_version"; done
  echo ")"
} >"$work/kubernetes/go.mod"

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
  pkgs=()
  for c in "${commands[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go build -trimpath -ldflags "$ldflags" -o "$staging/" "${pkgs[@]}"
  go build -trimpath -ldflags "-s -w" -o "$staging/pause" ./pause
)

log "building etcd $ETCD_VERSION"
cat >"$work/etcd/go.mod" <<EOF
module merge-job.local/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

tool go.etcd.io/etcd/server/v3
EOF
(
  cd "$work/etcd"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3
)

touch "$staging/.complete"
rm -rf "$out"
mv "$staging" "$out"
log "built in $(($(date +%s) - started)) s: $("$out/kubectl" version --client 2>/dev/null | head -n 1), etcd $("$out/etcd" --version | head -n 1)"
echo "$out"
