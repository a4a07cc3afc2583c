"""examples/update_shares.py in a small setting: what it prints equals what its run logs hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[2]


def test_update_shares_example(tmp_path):
    cmd = [sys.executable, "examples/update_shares.py", "--seeds", "1", "--steps", "4", "--out", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    rows = {m.group(1): [float(x) for x in m.group(2).replace("[", " ").replace("]", " ").replace(",", " ").split()]
            for m in re.finditer(r"^  (embed|block\.\d+|other)\s+([-\d. \[\],]+)$", out, re.M)}
    assert list(rows) == ["embed", "block.00", "block.01", "other"]
    for stage, col in (("pretrain", 1), ("sft", 4)):
        means = []
        for seed in range(1):
            run = open_run(tmp_path / f"seed{seed}" / stage)
            steps, share = run.read(f"{stage}/share")
            assert list(steps) == list(range(1, 5))
            assert np.allclose(share.sum(axis=1), 1.0)
            means.append(share.mean(axis=0))
        mean = np.mean(means, axis=0)
        for i, group in enumerate(rows):
            assert rows[group][col] == pytest.approx(mean[i], abs=6e-4)
