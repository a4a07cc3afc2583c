#!/usr/bin/env bash
# Test job: set up (idempotent) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
