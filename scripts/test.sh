#!/usr/bin/env bash
# Run merge-job's checks and tests: scripts/lint.sh (ruff, mypy), then pytest.
#
# Creates or updates .venv from uv.lock when needed (scripts/ensure-venv.sh), so a fresh
# clone needs only Python 3.11+ (and a Docker engine for the integration tests).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k plan`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/lint.sh
exec .venv/bin/pytest "$@"
