#!/usr/bin/env bash
# Run one benchmark (or all of them) on this machine, preparing what it needs first:
# the project's venv, a Docker engine and the local OpenSearch test image.
#
#   benchmarks/run.sh planning|overhead|startup|peers|nodes|simulate|admission|search_load|nightly [args]
#   benchmarks/run.sh all
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-venv.sh
bash scripts/ensure-docker.sh
primary=$(bash scripts/test-versions.sh --primary)
bash scripts/build-test-images.sh "$primary"
bash scripts/build-bench-images.sh "$primary" || true  # ISM image: optional (see docs/benchmarks.md)

name=${1:?usage: benchmarks/run.sh <name>|all [args]}
shift
if [ "$name" = all ]; then
  for each in startup simulate planning overhead peers nodes admission search_load nightly; do
    .venv/bin/python -m "benchmarks.$each"
  done
else
  exec .venv/bin/python -m "benchmarks.$name" "$@"
fi
