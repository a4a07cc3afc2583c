"""examples/output_space.py --quick: every figure it prints is recomputed here from the run logs
its probes wrote (means and 95% t-intervals over seeds with scipy), and the baselines from the
data split itself; nothing is asserted about which condition wins."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"^([+-]?\d+\.\d{3}) \[([+-]?\d+\.\d{3}), ([+-]?\d+\.\d{3})\]$")


def _load_example():
    spec = importlib.util.spec_from_file_location("output_space_example", ROOT / "examples" / "output_space.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def t_interval(values: list[float]) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def cell(text: str) -> tuple[float, float, float]:
    m = CELL.match(text.strip())
    assert m, f"unparsable cell {text!r}"
    return float(m[1]), float(m[2]), float(m[3])


def assert_cell(text: str, want: tuple[float, float, float]) -> None:
    got = cell(text)
    assert got == pytest.approx(want, abs=6e-4), (text, want)  # printed with 3 decimals


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    example = _load_example()
    out = tmp_path_factory.mktemp("output_space") / "runs"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = example.main(["--quick", "--out", str(out)])
    return example, result, buf.getvalue(), out


def test_printed_table_equals_the_run_logs(quick_run):
    example, result, printed, out = quick_run
    cfg = example.quick_config()
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("size | train cond |"))
    columns = lines[header].split(" | ")
    body = [line.split(" | ") for line in lines[header + 1 : header + 1 + len(cfg.sizes) * len(example.CONDITIONS)]]
    assert len(body) == len(cfg.sizes) * len(example.CONDITIONS)
    for cells in body:
        size, cond = int(cells[0]), cells[1]
        matched = "empty" if cond == "empty" else "correct"
        per_prompt: dict[str, list[float]] = {p: [] for p in example.EVAL_PROMPTS}
        chance, majority, mass = [], [], []
        for seed in cfg.seeds:
            run = open_run(out / str(size) / cond / f"seed{seed}")
            _, acc = run.read("bench/accuracy")
            _, abl = run.read("bench/ablation_accuracy")
            _, lm = run.read("bench/label_mass")
            _, ablm = run.read("bench/ablation_label_mass")
            names = [a["name"] for a in run.describe("bench")["ablations"]]
            assert names == ["empty", "misleading"]
            per_prompt["correct"].append(float(acc[-1, 0]))
            per_prompt["empty"].append(float(abl[-1, 0, 0]))
            per_prompt["misleading"].append(float(abl[-1, 1, 0]))
            mass.append(float(lm[-1, 0]) if matched == "correct" else float(ablm[-1, 0, 0]))
            # the baselines, recomputed from the data split rather than read from the log
            _, test = example.split(seed, cfg.n_test)
            counts = Counter(label for _, label in test)
            majority.append(max(counts.values()) / len(test))
            chance.append(1 / 3)
            _, logged_majority = run.read("bench/majority")
            assert float(logged_majority[-1, 0]) == pytest.approx(majority[-1], abs=1e-6)
        acc = per_prompt[matched]
        want = {
            "acc matched": t_interval(acc),
            "acc - chance": t_interval([a - c for a, c in zip(acc, chance)]),
            "acc - majority": t_interval([a - m for a, m in zip(acc, majority)]),
            "mass matched": t_interval(mass),
            "acc correct": t_interval(per_prompt["correct"]),
            "acc empty": t_interval(per_prompt["empty"]),
            "acc misleading": t_interval(per_prompt["misleading"]),
        }
        for name, text in zip(columns[2:], cells[2:]):
            assert_cell(text, want[name])
        # the returned figures are the printed ones
        row = next(r for r in result["rows"] if (r["size"], r["cond"]) == (size, cond))
        for name in want:
            assert row[name] == pytest.approx(want[name], abs=1e-6)  # chance is logged as float32


def test_printed_baselines_and_verdict_equal_the_logs(quick_run):
    example, _, printed, out = quick_run
    cfg = example.quick_config()
    verdict = [float(open_run(out / "pretrain" / f"seed{s}").read("verdict/accuracy")[1][-1, 0]) for s in cfg.seeds]
    line = next(line for line in printed.splitlines() if line.startswith("after pretraining"))
    assert_cell(re.search(r"test reviews (.*?) \(chance", line)[1], t_interval(verdict))
    majority = []
    for s in cfg.seeds:
        _, test = example.split(s, cfg.n_test)
        majority.append(max(Counter(label for _, label in test).values()) / len(test))
    line = next(line for line in printed.splitlines() if line.startswith("chance (uniform"))
    assert "0.333" in line and f"seeds {len(cfg.seeds)}" in line
    assert_cell(re.search(r"baseline (.*?); seeds", line)[1], t_interval(majority))
    # paired differences: the same seeds, correct minus empty
    for size in cfg.sizes:
        diffs = []
        for s in cfg.seeds:
            a = float(open_run(out / str(size) / "correct" / f"seed{s}").read("bench/accuracy")[1][-1, 0])
            e = float(open_run(out / str(size) / "empty" / f"seed{s}").read("bench/ablation_accuracy")[1][-1, 0, 0])
            diffs.append(a - e)
        line = next(line for line in printed.splitlines() if line.startswith(f"size {size}: paired"))
        assert_cell(re.search(r"correct - empty (.*?);", line)[1], t_interval(diffs))


def test_every_record_has_the_output_space_metrics(quick_run):
    example, _, _, out = quick_run
    run = open_run(out / "16" / "correct" / "seed0")
    steps, chance = run.read("bench/chance")
    assert np.allclose(chance, 1 / 3)
    _, mass = run.read("bench/label_mass")
    assert ((mass >= 0) & (mass <= 1)).all()  # no option is a prefix of another: a probability
    assert steps[0] == 0 and steps[-1] == example.quick_config().sft_steps


def test_report_reprints_the_same_figures_from_the_logs(quick_run):
    example, _, printed, out = quick_run
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        example.main(["--report", str(out)])
    figures = [line for line in printed.splitlines() if not line.startswith(("seed ", "total "))]
    assert buf.getvalue().splitlines() == figures
