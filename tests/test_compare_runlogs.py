"""scripts/compare_runlogs.py: equal captures compare equal; a one-ULP value, a missing step, a
changed definition or run fact, and a changed printed figure are each reported, with exit code 1.

The script is imported by path (scripts/ is not a package). The run logs are tiny ones written with
the library's own RunWriter, so these tests take a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import numpy as np
import pytest
import torch

from probes import Record
from probes.runlog import RunWriter

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runlogs.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_runlogs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


cr = _load()

STEPS = list(range(0, 12, 2))
DESCRIBE = {"type": "Toy", "source": "toy", "items": ["a", "b", "c"], "threshold": 1e-3}


def values(step: int) -> dict[str, torch.Tensor]:
    return {
        "p": torch.tensor([step / 7.0, 1.0 / (step + 3), float("nan") if step == 4 else 0.5], dtype=torch.float32),
        "half": torch.tensor(step / 3.0, dtype=torch.float32).to(torch.bfloat16),
        "count": torch.tensor(step * 3, dtype=torch.int64),
        "flag": torch.tensor(step % 4 == 0),
    }


def write_capture(
    root: Path,
    *,
    steps: list[int] = STEPS,
    describe: Optional[dict[str, Any]] = None,
    change: Optional[tuple[int, str, Any]] = None,
    run_info: Optional[dict[str, Any]] = None,
    flush_every_n: int = 4,
    stdout: str = "trained 12 steps, final loss 0.123 (5 s)\n",
) -> Path:
    """A capture directory like `capture` writes: one job's run log, its stdout and result, and
    capture.json. ``change=(step, metric, fn)`` replaces that record's tensor with ``fn(tensor)``."""
    root.mkdir()
    (root / "capture.json").write_text(json.dumps({"jobs": [{"name": "toy", "result": "passed"}]}))
    (root / "toy.stdout").write_text(stdout)
    (root / "toy.result").write_text("passed\n")
    info = {"example": "toy", **(run_info or {})}
    with RunWriter(root / "toy" / "run", flush_every_n=flush_every_n, run_info=info) as w:
        w.register_source("toy", describe or DESCRIBE)
        w.register_source("other", {"type": "Other", "source": "other"})
        for step in steps:
            tensors = values(step)
            if change is not None and change[0] == step:
                tensors[change[1]] = change[2](tensors[change[1]])
            w.write(Record(step, "toy", tensors, epoch=step // 6))
            w.write(Record(step, "other", {"x": torch.tensor([float(step), -0.0], dtype=torch.float64)}, epoch=-1))
    return root


def run_compare(a: Path, b: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = cr.main(["compare", str(a), str(b)])
    out = capsys.readouterr().out.splitlines()
    assert out and out[-1].startswith("EQUAL" if rc == 0 else "DIFFERENT"), out
    return rc, [line for line in out if line.startswith("DIFF ")]


def test_identical_content_is_equal_whatever_the_shards_times_and_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_capture(tmp_path / "a", flush_every_n=2)
    # written later (other record times and start time), cut into other shards, on "another host"
    b = write_capture(tmp_path / "b", flush_every_n=100, run_info={"host": "elsewhere", "pid": 1})
    assert cr.find_runs(a) == ["toy/run"]
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 0 and diffs == [], diffs


def test_one_ulp_in_one_value_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", change=(6, "p", lambda t: torch.nextafter(t, torch.full_like(t, 2.0))))
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1 and len(diffs) == 1, diffs
    line = diffs[0]
    assert "run=toy/run source=toy tensor=p step=6" in line and "index [0]" in line and "3 of 18 values" in line
    a_val, b_val = np.float32(6 / 7.0), np.nextafter(np.float32(6 / 7.0), np.float32(2))
    assert f"A={float(a_val)!r} B={float(b_val)!r}" in line


def test_a_bfloat16_and_a_flag_difference_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", change=(8, "flag", lambda t: ~t))
    c = write_capture(tmp_path / "c", change=(2, "half", lambda t: torch.nextafter(t, torch.full_like(t, 9.0))))
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1 and len(diffs) == 1 and "tensor=flag step=8" in diffs[0] and "A=True B=False" in diffs[0]
    rc, diffs = run_compare(a, c, capsys)
    assert rc == 1 and len(diffs) == 1 and "tensor=half step=2" in diffs[0]


def test_a_missing_step_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", steps=[s for s in STEPS if s != 4])
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1
    assert any("source=toy" in d and "steps differ" in d and "only in A [4]" in d for d in diffs), diffs
    assert any("source=other" in d and "only in A [4]" in d for d in diffs), diffs
    assert not any("tensor=" in d for d in diffs), diffs  # the common steps hold equal values
    assert any("timelines" in d for d in diffs)  # the record count of the timeline, too


def test_a_changed_description_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", describe={**DESCRIBE, "threshold": 1e-4})
    c = write_capture(tmp_path / "c", describe={**DESCRIBE, "items": ["a", "b", "d"]})
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1 and diffs == ["DIFF run=toy/run source=toy: describe.threshold: 0.001 != 0.0001"]
    rc, diffs = run_compare(a, c, capsys)
    assert rc == 1 and diffs == ['DIFF run=toy/run source=toy: describe.items[2]: "c" != "d"']


def test_run_information_other_than_host_facts_is_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", run_info={"seed": 1})
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1 and diffs == ["DIFF run=toy/run: run_info.seed: only in B (1)"]


def test_printed_figures_and_missing_files_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    b = write_capture(tmp_path / "b", stdout="trained 12 steps, final loss 0.124 (5 s)\n")
    (a / "extra.json").write_text(json.dumps({"rho": 0.5, "seconds": 3.0}))
    (b / "extra.json").write_text(json.dumps({"rho": 0.5, "seconds": 4.0}))
    (a / "only_a.stdout").write_text("x\n")
    rc, diffs = run_compare(a, b, capsys)
    assert rc == 1
    assert diffs == [
        "DIFF only_a.stdout: only in A",
        "DIFF toy.stdout line 1: A='trained 12 steps, final loss 0.123 (5 s)' B='trained 12 steps, final loss 0.124"
        " (5 s)'",
    ]


def test_stdout_masks_cover_only_wall_times() -> None:
    line = "pretrained 250 steps, final loss 1.234 (15 s)"
    assert cr.masked_lines("priming_experiment", line) == ["pretrained 250 steps, final loss 1.234 (<s> s)"]
    row = "GRPO       |             16,    16           |           0.997 | 0.829 -> 0.030       |    0.95 | 12.3"
    assert cr.masked_lines("rl_format_collapse", row) == [row[: -len("12.3")] + "<s>"]
    assert cr.masked_lines("keyword_probe_quickstart", line) == [line]  # masks are per job...
    live = "probes step 100 epoch 0 steps/s 17.9 elapsed 0:00:05 | keyword: top sand ×1.1e+08"
    masked = "probes step 100 epoch 0 steps/s <rate> elapsed <t> | keyword: top sand ×1.1e+08"
    assert cr.masked_lines("demo", live) == cr.masked_lines("sft_hf_gpt2", live) == [masked]  # ... or for all


def test_equal_mask_is_exact() -> None:
    a = np.array([1.0, np.nan, 0.0, 2.0], dtype=np.float32)
    b = np.array([1.0, np.nan, -0.0, np.nextafter(np.float32(2), np.float32(3))], dtype=np.float32)
    assert cr.equal_mask(a, b).tolist() == [True, True, False, False]
    assert cr.equal_mask(np.array([np.nan, 1.0]), np.array([1.0, np.nan])).tolist() == [False, False]


def test_compare_refuses_a_directory_that_is_no_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_capture(tmp_path / "a")
    assert cr.main(["compare", str(a), str(tmp_path)]) == 2
    assert "capture.json" in capsys.readouterr().err
