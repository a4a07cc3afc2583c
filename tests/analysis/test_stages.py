"""Cross-stage analysis against scipy, seeded bootstrap, run logs, and bad input."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from probes.choice.stages import BenchmarkScores, load_run_scores, stage_transfer
from tests.analysis._util import small_suite, write_benchmark_run

BENCH = ("a1", "a2", "b1", "b2", "c1")
CATS = ("A", "A", "B", "B", "C")
RUNS = ("r0", "r1", "r2", "r3", "r4", "r5")
SCIPY = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}


def synthetic(seed: int = 0, *, constant_b2_sft: bool = False) -> dict[str, dict[str, BenchmarkScores]]:
    rng = np.random.default_rng(seed)
    out = {}
    for run in RUNS:
        acc_pt = rng.uniform(0.2, 0.9, len(BENCH))
        conf_pt = np.clip(acc_pt + rng.normal(0, 0.1, len(BENCH)), 0, 1)
        acc_sft = np.clip(acc_pt + rng.normal(0.05, 0.1, len(BENCH)), 0, 1)
        conf_sft = rng.uniform(0.3, 1.0, len(BENCH))
        if constant_b2_sft:
            acc_sft[3] = 0.5
        out[run] = {
            "pretrain": BenchmarkScores(BENCH, CATS, acc_pt, conf_pt, stage="pretrain"),
            "sft": BenchmarkScores(BENCH, CATS, acc_sft, conf_sft, stage="sft"),
        }
    return out


def column(runs, stage, metric, j):
    return np.array([getattr(runs[r][stage], metric)[j] for r in RUNS])


def test_cross_stage_rows_match_scipy():
    runs = synthetic()
    report = stage_transfer(runs, n_boot=0)
    for metric in ("accuracy", "confidence"):
        for j, bench in enumerate(BENCH):
            row = report.transfer(bench, metric)
            x, y = column(runs, "pretrain", metric, j), column(runs, "sft", metric, j)
            for method, fn in SCIPY.items():
                ref = fn(x, y)
                assert row.correlations[method].r == pytest.approx(ref.statistic, abs=1e-12)
                assert row.correlations[method].p_value == pytest.approx(ref.pvalue, abs=1e-12)
        # category score = mean over the category's benchmarks
        x = np.mean([column(runs, "pretrain", metric, j) for j in (2, 3)], axis=0)
        y = np.mean([column(runs, "sft", metric, j) for j in (2, 3)], axis=0)
        row = report.transfer("B", metric, level="category")
        assert row.correlations["spearman"].r == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_coherence_and_alignment_match_scipy():
    runs = synthetic(1)
    report = stage_transfer(runs, n_boot=0)
    row = next(r for r in report.coherence if (r.stage, r.category, r.metric) == ("sft", "A", "accuracy"))
    ref = stats.pearsonr(column(runs, "sft", "accuracy", 0), column(runs, "sft", "accuracy", 1)).statistic
    assert row.n_pairs == 1 and row.coherence["pearson"].r == pytest.approx(ref, abs=1e-12)
    single = next(r for r in report.coherence if r.category == "C")
    assert not single.coherence["kendall"].defined and "one benchmark" in single.coherence["kendall"].reason
    # pooled over every (run, benchmark) point
    pooled = next(r for r in report.alignment if (r.stage, r.level) == ("pretrain", "all"))
    conf = np.concatenate([runs[r]["pretrain"].confidence for r in RUNS])
    acc = np.concatenate([runs[r]["pretrain"].accuracy for r in RUNS])
    ref = stats.kendalltau(conf, acc)
    assert pooled.correlations["kendall"].n == len(RUNS) * len(BENCH)
    assert pooled.correlations["kendall"].r == pytest.approx(ref.statistic, abs=1e-12)
    assert pooled.correlations["kendall"].p_value == pytest.approx(ref.pvalue, abs=1e-12)
    per_bench = next(r for r in report.alignment if (r.stage, r.level, r.name) == ("sft", "benchmark", "b1"))
    ref = stats.spearmanr(column(runs, "sft", "confidence", 2), column(runs, "sft", "accuracy", 2))
    assert per_bench.correlations["spearman"].r == pytest.approx(ref.statistic, abs=1e-12)


def test_mean_pairwise_coherence_with_more_benchmarks():
    rng = np.random.default_rng(5)
    names = ("x1", "x2", "x3", "x4")
    runs = {
        f"run{i}": {
            s: BenchmarkScores(names, ("X",) * 4, rng.uniform(0, 1, 4), rng.uniform(0, 1, 4), stage=s)
            for s in ("pretrain", "sft")
        }
        for i in range(7)
    }
    report = stage_transfer(runs, n_boot=200, seed=3)
    row = next(r for r in report.coherence if (r.stage, r.metric) == ("pretrain", "confidence"))
    values = np.stack([runs[r]["pretrain"].confidence for r in runs])
    ref = np.mean([stats.kendalltau(values[:, a], values[:, b]).statistic for a, b in combinations(range(4), 2)])
    assert row.n_pairs == 6 and row.coherence["kendall"].r == pytest.approx(ref, abs=1e-12)
    # bootstrap reference: the report's one index matrix, mean over defined pairs per resample
    idx = np.random.default_rng(3).integers(0, 7, size=(200, 7))
    means = []
    for row_idx in idx:
        rs = [
            stats.kendalltau(values[row_idx, a], values[row_idx, b]).statistic
            for a, b in combinations(range(4), 2)
            if np.ptp(values[row_idx, a]) > 0 and np.ptp(values[row_idx, b]) > 0
        ]
        if rs:
            means.append(np.mean(rs))
    low, high = np.quantile(means, [0.025, 0.975])
    assert row.coherence["kendall"].ci_low == pytest.approx(low, abs=1e-9)
    assert row.coherence["kendall"].ci_high == pytest.approx(high, abs=1e-9)


def test_bootstrap_over_runs_is_seeded_and_clusters_pooled_points():
    runs = synthetic(2)
    a = stage_transfer(runs, n_boot=150, seed=11).to_json()
    b = stage_transfer(runs, n_boot=150, seed=11).to_json()
    c = stage_transfer(runs, n_boot=150, seed=12).to_json()
    assert a == b and a != c
    report = stage_transfer(runs, n_boot=150, seed=11)
    row = report.transfer("a2", "accuracy")
    idx = np.random.default_rng(11).integers(0, len(RUNS), size=(150, len(RUNS)))
    x, y = column(runs, "pretrain", "accuracy", 1), column(runs, "sft", "accuracy", 1)
    rs = [stats.pearsonr(x[i], y[i]).statistic for i in idx if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    assert row.correlations["pearson"].ci_low == pytest.approx(np.quantile(rs, 0.025), abs=1e-9)
    assert row.correlations["pearson"].ci_high == pytest.approx(np.quantile(rs, 0.975), abs=1e-9)
    # pooled alignment: whole runs are resampled (all their benchmarks together)
    pooled = next(r for r in report.alignment if (r.stage, r.level) == ("sft", "all"))
    conf = np.stack([runs[r]["sft"].confidence for r in RUNS])
    acc = np.stack([runs[r]["sft"].accuracy for r in RUNS])
    rs = [stats.spearmanr(conf[i].ravel(), acc[i].ravel()).statistic for i in idx]
    assert pooled.correlations["spearman"].ci_low == pytest.approx(np.quantile(rs, 0.025), abs=1e-9)
    assert pooled.correlations["spearman"].ci_high == pytest.approx(np.quantile(rs, 0.975), abs=1e-9)


def test_constant_series_is_undefined_and_json_safe():
    report = stage_transfer(synthetic(3, constant_b2_sft=True), n_boot=50)
    row = report.transfer("b2", "accuracy")
    for c in row.correlations.values():
        assert not c.defined and math.isnan(c.r)
        assert c.reason.startswith("accuracy at sft is constant (every value is 0.5)")
    text = json.dumps(report.to_json(), allow_nan=False)  # no NaN in the JSON: null instead
    assert '"defined": false' in text


def test_mismatched_runs_get_clear_errors():
    runs = synthetic()
    bad = dict(runs)
    s = runs["r3"]["sft"]
    bad["r3"] = {
        "pretrain": runs["r3"]["pretrain"],
        "sft": BenchmarkScores(BENCH[:4], CATS[:4], s.accuracy[:4], s.confidence[:4]),
    }
    with pytest.raises(
        ValueError, match=r"Run 'r3', stage 'sft' has different benchmarks.*missing \['c1'\], extra \[\]"
    ):
        stage_transfer(bad)
    renamed = dict(runs)
    renamed["r1"] = {
        st: BenchmarkScores(("a1", "a2", "b1", "b2", "z9"), CATS, v.accuracy, v.confidence)
        for st, v in runs["r1"].items()
    }
    with pytest.raises(ValueError, match=r"missing \['c1'\], extra \['z9'\]"):
        stage_transfer(renamed)
    recat = dict(runs)
    recat["r2"] = {
        st: BenchmarkScores(BENCH, ("A", "A", "B", "X", "C"), v.accuracy, v.confidence) for st, v in runs["r2"].items()
    }
    with pytest.raises(ValueError, match="Benchmark 'b2' has category 'X' in run 'r2'"):
        stage_transfer(recat)
    with pytest.raises(ValueError, match="Run 'r0' has no stage 'rl'; its stages are \\['pretrain', 'sft'\\]"):
        stage_transfer(runs, target_stage="rl")
    with pytest.raises(ValueError, match="at least 3 runs, got 2"):
        stage_transfer({k: runs[k] for k in RUNS[:2]})
    with pytest.raises(ValueError, match="one per benchmark"):
        BenchmarkScores(BENCH, CATS, [0.1, 0.2], [0.1] * 5)


def test_benchmark_scores_reorder_by_name():
    runs = synthetic(4)
    shuffled = dict(runs)
    order = [4, 2, 0, 3, 1]
    shuffled["r5"] = {
        st: BenchmarkScores(
            tuple(BENCH[i] for i in order), tuple(CATS[i] for i in order), v.accuracy[order], v.confidence[order]
        )
        for st, v in runs["r5"].items()
    }
    assert (
        stage_transfer(shuffled, n_boot=0).to_json()["cross_stage"]
        == stage_transfer(runs, n_boot=0).to_json()["cross_stage"]
    )


def test_load_run_scores_from_real_run_logs(tmp_path):
    suite = small_suite()
    pt = {"accuracy": [0.5, 0.25, 1.0], "confidence": [0.6, 0.4, 0.7], "ece": [0.1, 0.2, 0.3]}
    sft = {"accuracy": [0.75, 0.5, 0.5], "confidence": [0.8, 0.5, 0.6], "ece": [0.05, 0.1, 0.2]}
    write_benchmark_run(tmp_path / "one", suite, {"pretrain": pt, "sft": sft}, extra_steps=2)
    got = load_run_scores(tmp_path / "one")
    assert sorted(got) == ["pretrain", "sft"]
    assert got["pretrain"].step == 20  # the end-of-stage reading, not an earlier one
    assert got["pretrain"].accuracy.tolist() == pytest.approx(pt["accuracy"])
    assert got["sft"].ece.tolist() == pytest.approx(sft["ece"])
    assert got["sft"].categories == ("colour", "colour", "taste")
    # per-stage sub-directories are merged
    write_benchmark_run(tmp_path / "two" / "pretrain", suite, {"pretrain": pt})
    write_benchmark_run(tmp_path / "two" / "sft", suite, {"sft": sft})
    merged = load_run_scores(tmp_path / "two")
    assert merged["sft"].confidence.tolist() == pytest.approx(sft["confidence"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no run log"):
        load_run_scores(tmp_path / "empty")
