"""`benchmarks/run_all.py --quick`: runs, prints one table whose every cell is the JSON it writes.

The whole quick run takes minutes on 2 shared cores (keyword and format benchmarks, a DDP launch),
so CI runs the run-log benchmark through the same command line (about 15 s) and the full quick
run only with ``PROBES_RUN_BENCHMARKS=1``. Ratios are timings: their targets are not asserted here
(a loaded CI machine is not a benchmark machine), only that each is a positive finite number and
is printed as written.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *only: str) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/run_all.py", "--quick", "--json", str(out)]
    if only:
        cmd += ["--only", *only]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def _check_table(stdout: str, results: dict, names: list[str]) -> None:
    assert results["quick"] is True and sorted(results["benchmarks"]) == sorted(names)
    lines = stdout.splitlines()
    for name, bench in results["benchmarks"].items():
        assert bench["seconds"] > 0 and bench["ratios"], name
        for r in bench["ratios"]:
            value = r["value"]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (name, r)
            assert value == bench["raw"][r["key"]]  # the ratio is the measured raw value
            short = name.removeprefix("bench_")
            row = next((x for x in lines if x.startswith(short + " ") and r["what"] in x), None)
            assert row is not None, f"no table row for {name}: {r['what']}\n{stdout}"
            cells = re.split(r"\s{2,}", row.strip())
            assert float(cells[2]) == pytest.approx(value, rel=5e-3), (row, value)  # printed to 3 digits
            assert cells[3] == str(r["target"])


def test_run_all_quick_runlog_table_is_its_json(tmp_path: Path) -> None:
    stdout, results = _run(tmp_path, "bench_runlog")
    _check_table(stdout, results, ["bench_runlog"])


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PROBES_RUN_BENCHMARKS") != "1", reason="minutes long; set PROBES_RUN_BENCHMARKS=1")
@pytest.mark.timeout(1800)
def test_run_all_quick_every_benchmark(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.run_all import BENCHES

    stdout, results = _run(tmp_path)
    _check_table(stdout, results, list(BENCHES))
