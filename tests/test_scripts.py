"""The README's main command, `bash scripts/demo.sh`, end to end (its bootstrap is idempotent)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_script_sets_up_and_runs_the_demo(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("scripts/demo.sh uses the repository's .venv, which this checkout does not have")
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}  # no wrapped paths
    proc = subprocess.run(
        ["bash", "scripts/demo.sh", "--quick", "--no-live", "--steps", "5", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "what the probes saw" in proc.stdout and f"probes summary {out / 'lm'}" in proc.stdout
    lm, rl = open_run(out / "lm"), open_run(out / "rl")
    assert lm.status == rl.status == "finished"
    assert sorted(lm.sources()) == ["keyword", "priming"] and rl.sources() == ["format"]
