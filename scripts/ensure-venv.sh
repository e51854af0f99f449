#!/usr/bin/env bash
# Create .venv and install the project with its test extra, when needed.
#
# Sourced by scripts/test.sh and scripts/demo.sh (run from the repository root).
# Reinstalls only when pyproject.toml changed, so a warm run costs nothing.
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
