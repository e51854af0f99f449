#!/usr/bin/env bash
# Build the pinned test tools from the Go module proxy into a cache: helm and helmfile
# (chart), pushgateway (metrics tests), promtool (alert rule tests) and actionlint (the
# GitHub workflow files).
#
#   scripts/install-tools.sh            then: export PATH="${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}/bin:$PATH"
#
# The tools are compiled from their tagged modules on the Go module proxy
# (scripts/lib/gobuild.sh). A binary that already reports the pinned version is kept, so a
# warm machine returns in well under a second.
set -euo pipefail

HELM_VERSION=v3.22.0
HELMFILE_VERSION=v1.8.0
PUSHGATEWAY_VERSION=v1.11.1
# Prometheus tags its Go module v0.3XX.Y for release 3.XX.Y.
PROMETHEUS_MODULE_VERSION=v0.316.0
PROMTOOL_VERSION=3.16.0
ACTIONLINT_VERSION=v1.7.12

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
bin="$cache/bin"
mkdir -p "$bin"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/gobuild.sh
source "$here/lib/gobuild.sh"

command -v go >/dev/null || die "Go is needed to build the test tools"

# helm: `go install` alone leaves the version at "v3.22" and, worse, the built-in
# Kubernetes version at 1.20 (the Makefile sets both with -X). Lint and template use that
# built-in version for `kubeVersion` checks, so set it from the client-go helm is built on,
# as the upstream Makefile does.
if [ "$("$bin/helm" version --template '{{.Version}}' 2>/dev/null || true)" = "$HELM_VERSION" ]; then
  log "helm $HELM_VERSION present"
else
  log "building helm $HELM_VERSION (a few minutes on a cold Go cache)"
  gomod=$(go_module_field "helm.sh/helm/v3@$HELM_VERSION" GoMod)
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
  dir=$(go_module_field "github.com/helmfile/helmfile@$HELMFILE_VERSION" Dir)
  src=$(mktemp -d /tmp/merge-job-helmfile.XXXXXX)
  trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
  cp -R "$dir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X go.szostok.io/version.version=$HELMFILE_VERSION" -o "$bin/helmfile" .)
  log "built $("$bin/helmfile" --version)"
fi

# Prometheus tools, built from a wrapper module (pushgateway's version list is refused by
# the proxy). prometheus/common/version is where these commands read the version they print.
prometheus_version_flag() { printf -- '-X github.com/prometheus/common/version.Version=%s' "$1"; }

if "$bin/pushgateway" --version 2>&1 | grep -qF "version ${PUSHGATEWAY_VERSION#v} "; then
  log "pushgateway $PUSHGATEWAY_VERSION present"
else
  go_build_tool "$bin" pushgateway github.com/prometheus/pushgateway "$PUSHGATEWAY_VERSION" \
    github.com/prometheus/pushgateway "$(prometheus_version_flag "${PUSHGATEWAY_VERSION#v}")"
  log "built $("$bin/pushgateway" --version 2>&1 | head -n 1)"
fi

if "$bin/promtool" --version 2>&1 | grep -qF "version $PROMTOOL_VERSION "; then
  log "promtool $PROMTOOL_VERSION present"
else
  # promtool PROMTOOL_VERSION is built from the module prometheus PROMETHEUS_MODULE_VERSION;
  # remove_all_sd (Prometheus >= 3.10) leaves out every service-discovery provider and its
  # cloud SDK, which the alert rule tests (`promtool check rules`, `promtool test rules`)
  # never use: a cold build takes 4.2 CPU-minutes instead of 10.8 (docs/ci.md).
  go_build_tool "$bin" promtool github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool "$(prometheus_version_flag "$PROMTOOL_VERSION")" \
    remove_all_sd
  log "built $("$bin/promtool" --version 2>&1 | head -n 1)"
fi

if [ "$("$bin/actionlint" -version 2>/dev/null | head -n 1)" = "$ACTIONLINT_VERSION" ]; then
  log "actionlint $ACTIONLINT_VERSION present"
else
  # Built inside a wrapper module, actionlint cannot read its version from the build
  # info; -X sets what `actionlint -version` prints (the check above reads it).
  go_build_tool "$bin" actionlint github.com/rhysd/actionlint "$ACTIONLINT_VERSION" \
    github.com/rhysd/actionlint/cmd/actionlint "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
  log "built actionlint $("$bin/actionlint" -version | head -n 1)"
fi
