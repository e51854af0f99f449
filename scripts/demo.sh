#!/usr/bin/env bash
# The demo: a throwaway local OpenSearch, seeded with realistic indices, then
# `merge-job plan` and `merge-job run`, a before/after segments table, and clean-up.
#
# Creates or updates .venv from uv.lock when needed (scripts/ensure-venv.sh). Needs a
# Docker engine.
# Uses the locally built test image of the primary OpenSearch version (tests/images/versions)
# when present (see scripts/build-test-images.sh), else the official image;
# MERGE_JOB_DEMO_IMAGE overrides.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-venv.sh

exec .venv/bin/python scripts/demo.py "$@"
