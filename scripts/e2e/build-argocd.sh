#!/usr/bin/env bash
# Build the pinned Argo CD (one multi-call binary: repo-server, application controller,
# cmp-server, ...) from the Go module proxy into a cache keyed by version, with the two
# shell wrappers its repo-server calls and its CRDs. scripts/argocd.sh runs these; so does CI.
#
#   scripts/build-argocd.sh        prints the directory holding the binaries (last line)
#
# No release binaries can be downloaded on our CI machines, but the Go module proxy is
# reachable. A wrapper module requires github.com/argoproj/argo-cd/v3 and names its
# command in a `tool` line; argo-cd's own replace block is copied into the wrapper (replace
# directives of a dependency are ignored otherwise), minus the one pointing at its local
# ./gitops-engine directory, which the published module already resolves.
# A cold build takes ~6 minutes on 2 cores and ~5 GB of Go caches; the caches live in a
# temporary directory removed afterwards, only the binary (~160 MB), wrappers and CRDs are kept.
set -euo pipefail

# The one place Argo CD's version is pinned (scripts/argocd.sh asks with --print-versions).
ARGOCD_VERSION=v3.6.1
# argo-cd v3.6's go.mod needs a newer Go than the machine's; the go command fetches this
# toolchain from the module proxy.
ARGOCD_GO_TOOLCHAIN=go1.27.3

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
out="$cache/argocd/argocd-$ARGOCD_VERSION"
module=github.com/argoproj/argo-cd/v3
# The roles the binary takes from the name it is called by (see argo-cd's cmd/main.go).
roles=(argocd-repo-server argocd-application-controller argocd-cmp-server)

log() { printf '[build-argocd] %s\n' "$*" >&2; }

if [ "${1:-}" = "--print-versions" ]; then
  printf 'ARGOCD_VERSION=%s\nARGOCD_BIN=%s\n' "$ARGOCD_VERSION" "$out"
  exit 0
fi

complete() {
  [ -f "$out/.complete" ] && [ -x "$out/argocd" ] && [ -f "$out/crds/application-crd.yaml" ] &&
    [ -x "$out/git-verify-wrapper.sh" ] && [ -x "$out/gpg-wrapper.sh" ] || return 1
  local r
  for r in "${roles[@]}"; do [ -x "$out/$r" ] || return 1; done
}

if complete; then
  log "Argo CD $ARGOCD_VERSION present in $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { log "Go is needed to build Argo CD"; exit 1; }

work=$(mktemp -d /tmp/merge-job-build-argocd.XXXXXX)
cleanup() {
  # The module cache is read-only by design; make it removable first.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export GOCACHE="$work/gocache" GOMODCACHE="$work/gomodcache" GOTOOLCHAIN=$ARGOCD_GO_TOOLCHAIN
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
staging="$out.partial"
rm -rf "$staging"
mkdir -p "$staging" "$work/argocd"
started=$(date +%s)

log "building Argo CD $ARGOCD_VERSION with $ARGOCD_GO_TOOLCHAIN (~6 minutes on a cold machine)"
cd "$work/argocd"
printf 'module merge-job.local/argocd\n\ngo 1.27.0\n\nrequire %s %s\n\ntool %s/cmd\n' \
  "$module" "$ARGOCD_VERSION" "$module" >go.mod
upstream=$(go mod download -json "$module@$ARGOCD_VERSION" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
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

touch "$staging/.complete"
rm -rf "$out"
mv "$staging" "$out"
log "built in $(($(date +%s) - started)) s: $("$out/argocd" version --client --short 2>/dev/null | head -n 1)"
echo "$out"
