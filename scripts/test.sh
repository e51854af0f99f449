#!/usr/bin/env bash
# Run merge-job's checks and tests: lint (ruff), types (mypy), then pytest.
#
# Creates .venv and installs the project with its test extra when needed, so a fresh
# clone needs only Python 3.11+ (and a Docker engine for the integration tests).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k plan`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# Reinstall only when the project's metadata changed (keeps a warm run quick).
stamp=.venv/.merge-job-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e '.[test]'
  echo "$wanted" >"$stamp"
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
