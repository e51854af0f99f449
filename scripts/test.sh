#!/usr/bin/env bash
# Run merge-job's checks and tests: lint (ruff), types (mypy), then pytest.
#
# Creates or updates .venv from uv.lock when needed (scripts/ensure-venv.sh), so a fresh
# clone needs only Python 3.11+ (and a Docker engine for the integration tests).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k plan`.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-venv.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
