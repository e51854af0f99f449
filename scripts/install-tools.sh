#!/usr/bin/env bash
# Build the pinned chart tools (helm, helmfile) from the Go module proxy into a cache.
#
#   scripts/install-tools.sh            then: export PATH="${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}/bin:$PATH"
#
# No release binaries can be downloaded on our CI machines, but the Go module proxy is
# reachable, so the tools are compiled from their tagged modules. A binary that already
# reports the pinned version is kept, so a warm machine returns in well under a second.
set -euo pipefail

HELM_VERSION=v3.22.0
HELMFILE_VERSION=v1.8.0

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
bin="$cache/bin"
mkdir -p "$bin"

log() { printf '[install-tools] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "Go is needed to build helm and helmfile"; exit 1; }

# helm: `go install` alone leaves the version at "v3.22" and, worse, the built-in
# Kubernetes version at 1.20 (the Makefile sets both with -X). Lint and template use that
# built-in version for `kubeVersion` checks, so set it from the client-go helm is built on,
# as the upstream Makefile does.
if [ "$("$bin/helm" version --template '{{.Version}}' 2>/dev/null || true)" = "$HELM_VERSION" ]; then
  log "helm $HELM_VERSION present"
else
  log "building helm $HELM_VERSION (a few minutes on a cold Go cache)"
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")  # e.g. v0.37.0
  k8s_minor=$(echo "$client_go" | cut -d. -f2)
  pkg=helm.sh/helm/v3
  ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.metadata="
  ldflags="$ldflags -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  ldflags="$ldflags -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
  GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
  log "built $("$bin/helm" version --short)"
fi

# helmfile: its go.mod has replace directives, which `go install pkg@version` refuses.
# Build from a writable copy of the downloaded module instead (the module cache is
# read-only), which honours the replaces as the upstream release build does.
if "$bin/helmfile" --version 2>/dev/null | grep -qF "$HELMFILE_VERSION"; then
  log "helmfile $HELMFILE_VERSION present"
else
  log "building helmfile $HELMFILE_VERSION (a few minutes on a cold Go cache)"
  dir=$(go mod download -json "github.com/helmfile/helmfile@$HELMFILE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  src=$(mktemp -d /tmp/merge-job-helmfile.XXXXXX)
  trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
  cp -R "$dir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X go.szostok.io/version.version=$HELMFILE_VERSION" -o "$bin/helmfile" .)
  log "built $("$bin/helmfile" --version)"
fi
