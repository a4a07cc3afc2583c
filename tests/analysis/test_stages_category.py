"""The two category statistics of cross-stage transfer: the mean of per-benchmark correlations
(the paper's) and the correlation of category-mean scores, against scipy and explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probes.analysis.correlation import bootstrap_indices
from probes.choice.stages import LEVEL_LABELS, cross_stage_display_rows, stage_transfer
from tests.analysis.test_stages import BENCH, RUNS, SCIPY, column, synthetic


@pytest.mark.parametrize("method", list(SCIPY))
def test_category_avg_is_the_mean_of_per_benchmark_scipy_correlations(method):
    runs = synthetic(2)
    report = stage_transfer(runs, n_boot=0)
    for metric in ("accuracy", "confidence"):
        for cat, cols in (("A", (0, 1)), ("B", (2, 3)), ("C", (4,))):
            per_bench = [
                SCIPY[method](column(runs, "pretrain", metric, j), column(runs, "sft", metric, j)).statistic
                for j in cols
            ]
            row = report.transfer(cat, metric, level="category_avg")
            assert row.correlations[method].r == pytest.approx(float(np.mean(per_bench)), abs=1e-12)
            assert math.isnan(row.correlations[method].p_value)  # no p-value for a mean of r
            assert row.n_defined[method] == len(cols)
            assert row.benchmarks == tuple(BENCH[j] for j in cols)
            means = report.transfer(cat, metric, level="category")
            x = np.mean([column(runs, "pretrain", metric, j) for j in cols], axis=0)
            y = np.mean([column(runs, "sft", metric, j) for j in cols], axis=0)
            assert means.correlations[method].r == pytest.approx(SCIPY[method](x, y).statistic, abs=1e-12)


def test_the_two_statistics_differ_on_purpose_built_data():
    # both benchmarks transfer perfectly (sft = an increasing linear map of pretrain: r = 1 each),
    # but x has the wide spread at pretrain and y at sft, so the category mean follows x at
    # pretrain and y at sft, which are unrelated
    from probes.choice.stages import BenchmarkScores

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.0, 1.0, len(RUNS)), rng.uniform(0.0, 1.0, len(RUNS))
    runs = {}
    for i, run in enumerate(RUNS):
        pt = np.array([x[i], 0.5 + 0.01 * y[i]])
        sft = np.array([0.5 + 0.01 * x[i], y[i]])
        runs[run] = {
            "pretrain": BenchmarkScores(("x", "y"), ("K", "K"), pt, pt, stage="pretrain"),
            "sft": BenchmarkScores(("x", "y"), ("K", "K"), sft, sft, stage="sft"),
        }
    report = stage_transfer(runs, n_boot=0, methods=("pearson",))
    avg = report.transfer("K", "accuracy", level="category_avg").correlations["pearson"].r
    means = report.transfer("K", "accuracy", level="category").correlations["pearson"].r
    ref = stats.pearsonr((x + 0.5 + 0.01 * y) / 2, (0.5 + 0.01 * x + y) / 2).statistic
    assert avg == pytest.approx(1.0, abs=1e-12)
    assert means == pytest.approx(ref, abs=1e-12) and means < 0.9


def test_category_avg_bootstrap_matches_a_loop_over_resamples():
    runs = synthetic(3)
    n_boot, seed, ci = 200, 7, 0.9
    report = stage_transfer(runs, n_boot=n_boot, seed=seed, ci=ci, methods=("spearman",))
    idx = bootstrap_indices(len(RUNS), n_boot, seed)
    stats_ = []
    for rows in idx:
        vals = []
        for j in (0, 1):
            x = column(runs, "pretrain", "accuracy", j)[rows]
            y = column(runs, "sft", "accuracy", j)[rows]
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue  # undefined in this resample: left out of the mean
            vals.append(stats.spearmanr(x, y).statistic)
        if vals:
            stats_.append(np.mean(vals))
    low, high = np.quantile(stats_, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    c = report.transfer("A", "accuracy", level="category_avg").correlations["spearman"]
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert c.n_boot_defined == len(stats_)


def test_an_undefined_benchmark_is_left_out_and_counted():
    runs = synthetic(0, constant_b2_sft=True)  # b2's sft accuracy is constant: its r is undefined
    report = stage_transfer(runs, n_boot=0)
    row = report.transfer("B", "accuracy", level="category_avg")
    ref = stats.pearsonr(column(runs, "pretrain", "accuracy", 2), column(runs, "sft", "accuracy", 2)).statistic
    assert row.n_defined["pearson"] == 1 and row.correlations["pearson"].r == pytest.approx(ref, abs=1e-12)
    assert row.to_json()["n_defined"] == {"pearson": 1, "spearman": 1, "kendall": 1}


def test_display_rows_are_labelled_and_ordered():
    report = stage_transfer(synthetic(), n_boot=0, metrics=("accuracy",))
    rows = cross_stage_display_rows(report)
    labels = [label for _, _, label, _ in rows]
    assert labels == [
        "  a1",
        "  a2",
        f"A: {LEVEL_LABELS['category_avg']}",
        f"A: {LEVEL_LABELS['category']}",
        "  b1",
        "  b2",
        f"B: {LEVEL_LABELS['category_avg']}",
        f"B: {LEVEL_LABELS['category']}",
        "  c1",
        f"C: {LEVEL_LABELS['category_avg']}",
        f"C: {LEVEL_LABELS['category']}",
    ]
    assert LEVEL_LABELS["category_avg"] == "mean of per-benchmark r (paper)"
    as_json = report.to_json()["cross_stage"]
    assert {r["level"]: r["label"] for r in as_json} == LEVEL_LABELS
