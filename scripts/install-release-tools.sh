#!/usr/bin/env bash
# The release tools: the OCI registry server (CNCF distribution, run by scripts/registry.sh)
# and the signer (cosign, used by scripts/release.sh and its tests), built from the Go
# module proxy into the tool cache; the SBOM tools into .venv-release (uv, from uv.lock);
# skopeo (pushes the image) and htpasswd (the registry's password file) from Debian.
#
#   scripts/install-release-tools.sh [registry|cosign|sbom|debian]...   default: all four
#                                        then: export PATH="${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}/bin:$PATH"
#   scripts/install-release-tools.sh --print-versions         the pinned versions, as shell assignments
#
# A binary that already reports the pinned version is kept, so a warm machine returns at
# once. The builds use the machine's Go caches, like scripts/install-tools.sh, whose helm
# shares many modules with cosign. Cold (empty Go caches, 2 cores): the registry ~1
# minute, cosign ~5.3 (docs/ci.md).
set -euo pipefail

# CNCF distribution, the registry most registries (Harbor among them) are built on.
DISTRIBUTION_VERSION=v3.1.2
COSIGN_VERSION=v3.1.3

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
bin="$cache/bin"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/gobuild.sh
source "$here/lib/gobuild.sh"

if [ "${1:-}" = "--print-versions" ]; then
  printf 'DISTRIBUTION_VERSION=%s\nCOSIGN_VERSION=%s\n' "$DISTRIBUTION_VERSION" "$COSIGN_VERSION"
  exit 0
fi

# distribution's cmd/registry links every storage driver, and the S3, Azure and GCS SDKs
# are most of its build. This main is cmd/registry's with only what the tests use: the
# filesystem driver and htpasswd authentication. Cold, it builds in 91 CPU-seconds instead
# of 193, into 25 MB instead of 56 (docs/ci.md).
REGISTRY_MAIN='package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	// RootCmd reports its own errors and exits non-zero.
	_ = registry.RootCmd.Execute()
}'

install_registry() {
  local module=github.com/distribution/distribution/v3 main=merge-job.local/registry
  # `registry --version` prints the main package and the version.
  if "$bin/registry" --version 2>/dev/null | grep -qF " $main $DISTRIBUTION_VERSION"; then
    log "registry (distribution) $DISTRIBUTION_VERSION present"
    return 0
  fi
  go_build_tool "$bin" registry "$module" "$DISTRIBUTION_VERSION" "" \
    "-X $module/version.version=$DISTRIBUTION_VERSION -X $module/version.mainpkg=$main" "" "$REGISTRY_MAIN"
}

install_cosign() {
  if [ "$("$bin/cosign" version --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["gitVersion"])' 2>/dev/null || true)" = "$COSIGN_VERSION" ]; then
    log "cosign $COSIGN_VERSION present"
    return 0
  fi
  go_build_tool "$bin" cosign github.com/sigstore/cosign/v3 "$COSIGN_VERSION" github.com/sigstore/cosign/v3/cmd/cosign \
    "-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION -X sigs.k8s.io/release-utils/version.gitTreeState=clean"
}

# The SBOM tools (pyproject.toml's `release` group) in their own environment, .venv-release,
# at the locked versions. Made here, before any test: the release suite runs release.sh
# with no route to PyPI. Nothing runs while pyproject.toml and uv.lock are unchanged.
install_sbom() {
  local root stamp wanted
  root=$(cd "$here/.." && pwd)
  stamp="$root/.venv-release/.merge-job-synced"
  wanted=$(cat "$root/pyproject.toml" "$root/uv.lock" | sha256sum | cut -d' ' -f1)
  if [ -x "$root/.venv-release/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    log "SBOM tools (.venv-release) present"
    return 0
  fi
  (cd "$root" && UV_PROJECT_ENVIRONMENT=.venv-release UV_PYTHON_DOWNLOADS=never bash scripts/uv.sh \
    sync --quiet --frozen --only-group release --no-install-project --python "${PYTHON:-python3}")
  echo "$wanted" >"$stamp"
  log "SBOM tools installed in .venv-release"
}

[ $# -gt 0 ] || set -- registry cosign sbom debian
for tool in "$@"; do
  case "$tool" in
    registry) install_registry ;;
    cosign) install_cosign ;;
    sbom) install_sbom ;;
    debian)
      debian_package skopeo skopeo
      debian_package htpasswd apache2-utils
      ;;
    *) die "unknown tool $tool (registry, cosign, sbom, debian)" ;;
  esac
done
