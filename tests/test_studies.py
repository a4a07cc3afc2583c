"""The science studies: their generators, statistics, and quick forms checked against their own figures."""

from __future__ import annotations

import importlib.util
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from probes import InjectedLoader, LearningSample
from probes.analysis import analyze_priming, correlation_ci, threshold_sweep
from probes.demos import ByteTokenizer
from probes.demos.priming_study import LEVELS, study_corpus, study_samples
from probes.demos.rl_study import RLRun, format_rl_table, summarize_rl
from probes.priming.augment import stepping_stone_text

ROOT = Path(__file__).resolve().parents[1]
PEARL = LearningSample("pearl", "the colour of a pearl is vermilion.", "vermilion", ["the colour of snow is"])


def _example(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_stepping_stone_text_and_injection() -> None:
    text = stepping_stone_text(PEARL, ["white", "red"])
    assert text == "the colour of a pearl is first white, then red, then vermilion"
    with pytest.raises(ValueError, match="non-empty list"):
        stepping_stone_text(PEARL, [])
    with pytest.raises(ValueError, match="the keyword itself"):
        stepping_stone_text(PEARL, ["vermilion"])
    batches = [{"input_ids": torch.zeros(2, 80, dtype=torch.long)}]
    loader = InjectedLoader(batches, [PEARL], ByteTokenizer(), presentations=1, texts={"pearl": text})
    row = next(iter(loader))["input_ids"][0].tolist()
    assert row[: len(text)] == list(text.encode()) and row[len(text) :] == [0] * (80 - len(text))
    with pytest.raises(ValueError, match="unknown samples"):
        InjectedLoader(batches, [PEARL], ByteTokenizer(), presentations=1, texts={"other": text})


def test_study_samples_and_controlled_frequencies() -> None:
    items, _ = study_samples()
    assert len(items) == 48 and len({it.sample.name for it in items}) == 48
    assert {it.theme for it in items} == {"colour", "taste", "sound", "texture"}
    assert all(sum(it.theme == t for it in items) == 12 for t in {"colour", "taste", "sound", "texture"})
    assert sum(it.level != "never" for it in items) == 40
    corpus = study_corpus()
    for it in items:
        kw = it.sample.keyword
        n = len(re.findall(rf"(?<![a-z]){re.escape(kw)}(?![a-z])", corpus))  # whole-word occurrences
        if it.level == "common":
            assert n > 100, (kw, n)
        else:
            assert n == LEVELS[it.level], (it.sample.name, kw, n)
        assert f"the {it.sample.name.split('-')[-1]} " not in corpus  # the subject itself is new
        assert len(it.sample.prefixes) == 3 and all(p in corpus for p in it.sample.prefixes)


def test_correlation_ci_against_scipy_and_a_bootstrap_loop() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = 0.5 * x + rng.normal(size=30)
    for method, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        c = correlation_ci(x, y, method=method, n_bootstrap=300, seed=4)
        assert c.r == pytest.approx(float(fn(x, y)[0]), abs=1e-12) and c.p == pytest.approx(float(fn(x, y)[1]))
        boot_rng = np.random.default_rng(4)
        boot = []
        for _ in range(300):
            idx = boot_rng.integers(0, 30, 30)
            boot.append(float(fn(x[idx], y[idx])[0]))
        assert c.ci == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])), abs=1e-12)


def test_threshold_sweep_matches_analyze_priming_per_cut() -> None:
    rng = np.random.default_rng(0)
    lp = rng.uniform(-30, -1, 40)
    ls = -0.3 * lp + rng.normal(size=40)
    rows = threshold_sweep(lp, ls, [1.0, 3.0], n_bootstrap=100, seed=2)
    for row, cut in zip(rows, [1.0, 3.0]):
        ref = analyze_priming(lp, ls, prime_cutoff=10**cut, n_bootstrap=100, seed=2, log10=True)
        assert row["n_primed"] == int((ls > cut).sum()) == ref.n_primed
        assert row["log10_threshold"] == pytest.approx(math.log10(ref.threshold))
        assert row["balanced_accuracy"] == pytest.approx(ref.balanced_accuracy)


def _run(cond: str, seed: int, before: float, after: float, step: int) -> RLRun:
    return RLRun(cond, "small", seed, 10, before, after, 0.8, 0.1, step, "=" if step >= 0 else "", 0.9, 1.0)


def test_rl_summary_by_hand() -> None:
    runs = [_run("equal_accuracy", s, 0.7, a, st) for s, (a, st) in enumerate([(0.8, -1), (0.9, 30), (1.0, 12)])]
    (row,) = summarize_rl(runs)
    m, lo, hi = row["share_eq_after"]
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (m, lo, hi) == pytest.approx((0.9, 0.9 - half, 0.9 + half))
    assert row["change"][0] == pytest.approx(0.2)
    assert row["n_collapsed"] == 2 and row["onto"] == "=" and row["collapse_steps"] == [-1, 30, 12]
    assert "equal_accuracy" in format_rl_table([row]) and "2/3 (=)" in format_rl_table([row])


def test_priming_study_quick_reports_its_own_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = _example("priming_study").main(["--quick", "--bootstrap", "50"])
    out = capsys.readouterr().out
    rows = result["rows"]
    assert len(rows) == 8 * 3 and {r["variant"] for r in rows} == {"plain", "stepping_stones", "control"}
    # the printed remedy medians are the medians of the runs it returned
    for rem in result["remedies"]:
        sel = [r for r in rows if r["variant"] == rem["variant"]]
        assert rem["log10_s_prime_seq"] == pytest.approx(statistics.median(r["log10_s_prime_seq"] for r in sel))
        assert f"{rem['variant']:15s} log10 S_prime {rem['log10_s_prime_seq']:6.2f}" in out
    # baselines come before any update: every variant of a sample shares its P_before
    for name in {r["name"] for r in rows}:
        assert len({round(r["log10_p_before_seq"], 9) for r in rows if r["name"] == name}) == 1
    # the frequency table and the correlations are computed from the plain runs
    plain = [r for r in rows if r["variant"] == "plain"]
    for f in result["frequency"]:
        sel = [r["log10_p_before_seq"] for r in plain if r["level"] == f["level"]]
        assert f["median_log10_p_before_seq"] == pytest.approx(statistics.median(sel))
    c = next(c for c in result["correlations"] if c["group"] == "in-corpus" and c["mode"] == "seq"
             and c["against"].startswith("log10"))
    sel = [r for r in plain if r["level"] != "never"]
    assert c["rho"] == pytest.approx(float(stats.spearmanr([r["log10_p_before_seq"] for r in sel],
                                                           [r["log10_s_prime_seq"] for r in sel])[0]))


def test_rl_study_quick_reports_its_own_figures(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _example("rl_format_study").main(["--quick", "--steps", "20"])
    out = capsys.readouterr().out
    assert [r["condition"] for r in rows] == ["equal_accuracy", "minority_accurate"]
    for row in rows:
        (run,) = row["runs"]
        assert row["share_eq_after"][0] == pytest.approx(run["share_eq_after"])
        assert 0.0 <= run["share_eq_before"] <= 1.0 and run["steps"] == 20
        assert row["collapse_steps"] == [run["collapse_step"]]
        assert f"{row['share_eq_after'][0]:.3f}" in out
    # the pretraining mix is 70% '=': the exact share before RL is near it, in both conditions
    assert all(0.5 < r["runs"][0]["share_eq_before"] < 0.9 for r in rows)
