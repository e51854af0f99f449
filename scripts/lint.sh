#!/usr/bin/env bash
# merge-job's static checks: lint (ruff), formatting (ruff format --check), types (mypy).
#
# Creates or updates .venv from uv.lock when needed (scripts/ensure-venv.sh). The same
# checks run before pytest in scripts/test.sh and, per commit, in .pre-commit-config.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/ensure-venv.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
