"""The main job: `probes demo --quick` completes, leaves run logs the reader and `probes summary`
read, and the figures it prints are the ones in its logs."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from probes.runlog import open_run


@pytest.mark.timeout(240)
def test_quick_demo_writes_readable_logs_and_prints_their_figures(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "probes.cli", "demo", "--quick", "--no-live", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    lm, rl = open_run(out / "lm"), open_run(out / "rl")
    assert sorted(lm.sources()) == ["keyword", "priming"] and rl.sources() == ["format"]
    assert lm.status == "finished" and rl.status == "finished"

    # the facts table: each printed S_mem is the last logged one
    steps, s_mem = lm.read("priming/s_mem")
    names = [s["name"] for s in lm.describe("priming")["samples"]]
    for name, value in zip(names, s_mem[-1]):
        row = re.search(rf"{re.escape(name)}\s*│\s*(\S+)\s*│\s*(\S+)\s*│", text)
        assert row, f"no row for {name} in:\n{text}"
        assert float(row.group(2)) == pytest.approx(float(value), rel=5e-3)
    _, exposures = lm.read("priming/exposures")
    assert exposures[-1].tolist() == [10] * len(names)  # --quick presents each fact 10 times

    # the collapse line names the step the log flags first
    _, collapsed = rl.read("format/collapsed")
    rl_steps = rl.steps("format")
    m = re.search(r"format collapse flagged at RL step (\d+)", text)
    assert m and collapsed.any()
    assert int(m.group(1)) == int(rl_steps[np.argmax(collapsed)])

    summary = subprocess.run(
        [sys.executable, "-m", "probes.cli", "summary", str(out / "lm")], capture_output=True, text=True, timeout=60
    )
    assert summary.returncode == 0 and "priming (PrimingProbe)" in summary.stdout

    # a second run into the same directory is refused clearly, and the first logs stay intact
    again = subprocess.run(
        [sys.executable, "-m", "probes.cli", "demo", "--quick", "--no-live", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert open_run(out / "lm").steps("priming").tolist() == steps.tolist()
