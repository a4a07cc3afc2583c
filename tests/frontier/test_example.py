"""examples/refinement_frontier.py in a small setting: what it prints equals what its run logs hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[2]


def test_refinement_frontier_example(tmp_path):
    cmd = [sys.executable, "examples/refinement_frontier.py", "--seeds", "1", "--steps", "2", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    last = out.strip().splitlines()[-1].replace("[", " ").replace("]", " ").replace(",", " ").split()
    assert last[0] == "2"
    inside, outside = [], []
    for seed in range(1):
        run = open_run(tmp_path / f"seed{seed}")
        inside.append(run.read("inside/accepted")[1][-1].mean())
        outside.append(run.read("outside/accepted")[1][-1].mean())
        assert run.describe("inside")["rule"].startswith("accepted = r_ifd_refined < r_ifd_original")
    assert float(last[1]) == pytest.approx(np.mean(inside), abs=6e-4)
    assert float(last[3]) == pytest.approx(np.mean(outside), abs=6e-4)
