# shellcheck shell=bash disable=SC2154  # log_tag and die come from lib/common.sh
# Building pinned Go commands from the Go module proxy: scripts/install-tools.sh,
# scripts/install-release-tools.sh, scripts/e2e/build-k8s.sh and scripts/e2e/build-argocd.sh.
# Sourced after lib/common.sh.
#
# No release binaries can be downloaded on our CI machines, but the Go module proxy is
# reachable, so the commands are compiled from their tagged modules. Most are built from a
# throw-away wrapper module that requires the pinned module and names the commands in a
# `tool` block: that is what lets `go mod tidy` resolve the commands' dependency graphs,
# and it works for modules whose version list the proxy refuses (where
# `go install …@version` fails).
#
#   go_module_field MODULE@VERSION FIELD     a field of `go mod download -json` (Dir, GoMod)
#   go_wrapper_module DIR GO MODULE VERSION PACKAGE...
#                                            write DIR/go.mod: `go GO`, `require MODULE
#                                            VERSION`, a `tool` line per PACKAGE; the caller
#                                            may append replace directives, then runs
#                                            `go mod tidy` and `go build` in DIR
#   go_build_tool BIN NAME MODULE VERSION PACKAGE LDFLAGS [TAGS] [MAIN]
#                                            one command: a wrapper module requiring
#                                            MODULE@VERSION, PACKAGE built with TAGS into
#                                            BIN/NAME (replaced only once the build
#                                            succeeded); with MAIN (Go source), the
#                                            wrapper's own main package instead
#
# A large build (Kubernetes, Argo CD: GBs of caches, worth nothing once the binaries exist)
# runs in a scratch directory and installs all or nothing into a directory keyed by version:
#
#   go_build_present OUT PATH...   succeeds when OUT was completed and holds every PATH
#   go_build_begin OUT WHAT        needs Go; sets `work` (scratch, removed on exit; GOCACHE
#                                  and GOMODCACHE live there) and `staging` (where the
#                                  caller puts the files); CGO off
#   go_build_done                  mark staging complete and put it in place of OUT

go_module_field() {
  go mod download -json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

go_wrapper_module() {
  local dir=$1 go_version=$2 module=$3 version=$4 package
  shift 4
  mkdir -p "$dir"
  {
    printf 'module merge-job.local/%s\n\ngo %s\n\nrequire %s %s\n\ntool (\n' \
      "$(basename "$dir")" "$go_version" "$module" "$version"
    for package in "$@"; do printf '\t%s\n' "$package"; done
    printf ')\n'
  } >"$dir/go.mod"
}

go_build_present() {
  local out=$1 path
  shift
  [ -f "$out/.complete" ] || return 1
  for path in "$@"; do [ -e "$out/$path" ] || return 1; done
}

go_build_begin() {
  go_build_out=$1
  command -v go >/dev/null || die "Go is needed to build $2"
  work=$(mktemp -d "/tmp/merge-job-$log_tag.XXXXXX")
  trap go_build_cleanup EXIT
  export GOCACHE="$work/gocache" GOMODCACHE="$work/gomodcache" CGO_ENABLED=0
  staging="$go_build_out.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
}

go_build_cleanup() {
  # The module cache is read-only by design; make it removable first.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}

go_build_done() {
  touch "$staging/.complete"
  rm -rf "$go_build_out"
  mv "$staging" "$go_build_out"
}

go_build_tool() {
  local bin=$1 name=$2 module=$3 version=$4 pkg=$5 ldflags=$6 tags=${7:-} main=${8:-} work started
  command -v go >/dev/null || die "Go is needed to build $name"
  mkdir -p "$bin"
  work=$(mktemp -d "/tmp/merge-job-$name.XXXXXX")
  started=$(date +%s)
  log "building $name $version (minutes on a cold Go cache)"
  if [ -n "$main" ]; then
    go_wrapper_module "$work/$name" 1.26 "$module" "$version"
    printf '%s\n' "$main" >"$work/$name/main.go"
    pkg=.
  else
    go_wrapper_module "$work/$name" 1.26 "$module" "$version" "$pkg"
  fi
  (
    export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
    cd "$work/$name"
    go mod tidy
    go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$bin/$name.partial" "$pkg"
  ) || {
    rm -rf "$work"
    die "building $name $version failed"
  }
  mv "$bin/$name.partial" "$bin/$name"
  rm -rf "$work"
  log "built $name $version in $(($(date +%s) - started)) s"
}
