#!/usr/bin/env bash
# Main job: set up (idempotent) and run `probes demo`; extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh plot
exec .venv/bin/probes demo "$@"
