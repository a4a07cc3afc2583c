#!/usr/bin/env bash
# Creates .venv (idempotent) and installs probes with the given extras.
# Torch: by default the CPU build `torch==2.13.0`; a GPU user sets TORCH_SPEC (e.g. TORCH_SPEC=torch,
# or TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124") before running.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.probes-installed-$(cat pyproject.toml scripts/bootstrap.sh | cksum | cut -d' ' -f1)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $TORCH_SPEC
  fi
  if [ -n "$extras" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  touch "$stamp"
fi
