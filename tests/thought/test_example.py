"""examples/thought_gain.py in a small setting: what it prints equals what its run logs hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[2]


def test_thought_gain_example(tmp_path):
    cmd = [sys.executable, "examples/thought_gain.py", "--seeds", "1", "--steps", "3", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "3"
    helpful = []
    for seed in range(1):
        run = open_run(tmp_path / f"seed{seed}")
        steps, gain = run.read("thought/gain")
        names = [it["name"] for it in run.describe("thought")["items"]]
        assert list(steps) == [0, 1, 2, 3]
        helpful.append(gain[-1][[n.startswith("helpful/") for n in names]].mean())
    assert float(last[1]) == pytest.approx(np.mean(helpful), abs=6e-3)
