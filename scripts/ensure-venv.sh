#!/usr/bin/env bash
# Create or update .venv from uv.lock: merge-job (editable) and the `test` dependency group,
# at exactly the locked versions (`uv sync --frozen`, with the pinned uv of scripts/uv.sh).
#
# Sourced by scripts/test.sh, scripts/demo.sh and benchmarks/run.sh (from the repository
# root). Nothing runs while pyproject.toml and uv.lock are unchanged since the last sync
# (no uv, no network), so a warm run costs nothing. A fresh machine needs Python 3.11+
# and PyPI, or a uv cache holding the locked files (then set UV_OFFLINE=1).
python=${PYTHON:-python3}
stamp=.venv/.merge-job-synced
wanted=$(cat pyproject.toml uv.lock | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  UV_PYTHON_DOWNLOADS=never bash scripts/uv.sh sync --quiet --frozen --group test --python "$python"
  echo "$wanted" >"$stamp"
fi
