#!/usr/bin/env bash
# Run the pinned uv (from PyPI), installed once into a cache: `scripts/uv.sh lock --check`.
#
# uv manages the lock (uv.lock), its exports (scripts/lock.sh) and the test venv
# (scripts/ensure-venv.sh); the image is installed with pip from the exported,
# hash-pinned requirement files.
set -euo pipefail

UV_VERSION=0.13.9

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
venv="$cache/uv-$UV_VERSION"
if [ ! -x "$venv/bin/uv" ]; then
  printf '[uv] installing uv %s into %s\n' "$UV_VERSION" "$venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
exec "$venv/bin/uv" "$@"
