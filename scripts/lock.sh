#!/usr/bin/env bash
# The one command that changes the locked dependencies.
#
#   scripts/lock.sh              re-lock after editing pyproject.toml (keeps every locked
#                                version that still fits), then refresh requirements/
#   scripts/lock.sh --upgrade    upgrade every package to the newest version allowed
#   scripts/lock.sh --check      fail if uv.lock or requirements/ is out of step with
#                                pyproject.toml (offline: reads no index)
#
# uv.lock is the source of truth. requirements/*.txt are its exports with every file hash,
# for pip in the Dockerfile (online and offline builds alike: pip --require-hashes --no-deps
# installs exactly those files and nothing else):
#   requirements/runtime.txt   what the image's venv holds besides merge-job itself
#   requirements/build.txt     the build backend that turns the sources into a wheel
set -euo pipefail
cd "$(dirname "$0")/.."

uv() { bash scripts/uv.sh "$@"; }

export_all() {  # dir
  local header="# Exported from uv.lock by scripts/lock.sh: do not edit."
  { echo "$header"; uv export --quiet --frozen --no-header --no-dev --no-emit-project \
      --format requirements-txt; } >"$1/runtime.txt"
  { echo "$header"; uv export --quiet --frozen --no-header --only-group build --no-emit-project \
      --format requirements-txt; } >"$1/build.txt"
}

case "${1:-}" in
  --check)
    uv lock --quiet --check --offline || {
      echo "uv.lock is out of step with pyproject.toml: run scripts/lock.sh" >&2
      exit 1
    }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    export_all "$tmp"
    for file in runtime.txt build.txt; do
      if ! cmp -s "$tmp/$file" "requirements/$file"; then
        echo "requirements/$file is out of step with uv.lock: run scripts/lock.sh" >&2
        diff -u "requirements/$file" "$tmp/$file" >&2 || true
        exit 1
      fi
    done
    ;;
  --upgrade)
    uv lock --upgrade
    mkdir -p requirements
    export_all requirements
    ;;
  "")
    uv lock
    mkdir -p requirements
    export_all requirements
    ;;
  *)
    echo "usage: scripts/lock.sh [--upgrade | --check]" >&2
    exit 2
    ;;
esac
