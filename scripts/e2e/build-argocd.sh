#!/usr/bin/env bash
# Build the pinned Argo CD (one multi-call binary: repo-server, application controller,
# cmp-server, ...) from the Go module proxy into a cache keyed by version, with the two
# shell wrappers its repo-server calls and its CRDs. scripts/e2e/argocd.sh runs these; so
# does CI.
#
#   scripts/e2e/build-argocd.sh        prints the directory holding the binaries (last line)
#
# argo-cd's own replace block is copied into the wrapper module (scripts/lib/gobuild.sh;
# replace directives of a dependency are ignored otherwise), minus the one pointing at its
# local ./gitops-engine directory, which the published module already resolves.
# A cold build takes ~6 minutes on 2 cores and ~5 GB of Go caches; the caches live in a
# temporary directory removed afterwards, only the binary (~160 MB), wrappers and CRDs are kept.
set -euo pipefail

# The one place Argo CD's version is pinned (scripts/e2e/argocd.sh asks with --print-versions).
ARGOCD_VERSION=v3.6.1
# argo-cd v3.6's go.mod needs a newer Go than the machine's; the go command fetches this
# toolchain from the module proxy.
ARGOCD_GO_TOOLCHAIN=go1.27.3

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
out="$cache/argocd/argocd-$ARGOCD_VERSION"
module=github.com/argoproj/argo-cd/v3
# The roles the binary takes from the name it is called by (see argo-cd's cmd/main.go).
roles=(argocd-repo-server argocd-application-controller argocd-cmp-server)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"
# shellcheck source=../lib/gobuild.sh
source "$here/../lib/gobuild.sh"

if [ "${1:-}" = "--print-versions" ]; then
  printf 'ARGOCD_VERSION=%s\nARGOCD_BIN=%s\n' "$ARGOCD_VERSION" "$out"
  exit 0
fi

if go_build_present "$out" argocd crds/application-crd.yaml git-verify-wrapper.sh gpg-wrapper.sh "${roles[@]}"; then
  log "Argo CD $ARGOCD_VERSION present in $out"
  echo "$out"
  exit 0
fi

go_build_begin "$out" "Argo CD"
export GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN GOFLAGS="-trimpath -buildvcs=false"
started=$(date +%s)

log "building Argo CD $ARGOCD_VERSION with $ARGOCD_GO_TOOLCHAIN (~6 minutes on a cold machine)"
go_wrapper_module "$work/argocd" 1.27.0 "$module" "$ARGOCD_VERSION" "$module/cmd"
cd "$work/argocd"
upstream=$(go_module_field "$module@$ARGOCD_VERSION" Dir)
# The replace block, single-line replaces included, without local-path targets.
python3 - "$upstream/go.mod" >>go.mod <<'EOF'
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
lines = []
for block in re.findall(r"^replace \(\n(.*?)^\)", text, re.S | re.M):
    lines += block.splitlines()
lines += re.findall(r"^replace (\S.*)$", text, re.M)
kept = [
    line.strip()
    for line in lines
    if "=>" in line
    and not line.strip().startswith("//")
    and not line.split("=>", 1)[1].strip().startswith(".")
]
print("\nreplace (")
for line in kept:
    print("\t" + line)
print(")")
EOF
go mod tidy
pkg=$module/common
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X $pkg.version=${ARGOCD_VERSION#v} -X $pkg.buildDate=$build_date"
ldflags="$ldflags -X $pkg.gitTreeState=clean"
go build -ldflags "$ldflags" -o "$staging/argocd" "$module/cmd"
for r in "${roles[@]}"; do ln -s argocd "$staging/$r"; done
# The repo-server runs these on every manifest generation, even with GPG verification off.
install -m 0755 "$upstream/hack/git-verify-wrapper.sh" "$upstream/hack/gpg-wrapper.sh" "$staging/"
# The CustomResourceDefinitions of the same version (Application, AppProject, ApplicationSet).
mkdir "$staging/crds"
install -m 0644 "$upstream"/manifests/crds/*-crd.yaml "$staging/crds/"

go_build_done
log "built in $(($(date +%s) - started)) s: $("$out/argocd" version --client --short 2>/dev/null | head -n 1)"
echo "$out"
