#!/usr/bin/env bash
# The demo: a throwaway local OpenSearch, seeded with realistic indices, then
# `merge-job plan` and `merge-job run`, a before/after segments table, and clean-up.
#
# Creates .venv with the project and its test extra when needed. Needs a Docker engine.
# Uses the locally built merge-job-test/opensearch:2.19.6 image when present (see
# scripts/build-test-images.sh), else the official image; MERGE_JOB_DEMO_IMAGE overrides.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.merge-job-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[test]'
  echo "$wanted" >"$stamp"
fi

exec .venv/bin/python scripts/demo.py
