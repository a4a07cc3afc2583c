"""Correlations against scipy on fixed inputs; the bootstrap against an independent loop."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from probes.analysis.correlation import batched_correlation, correlate

X = [0.31, 0.52, 0.12, 0.77, 0.45, 0.52, 0.90, 0.05]
Y = [0.20, 0.61, 0.25, 0.70, 0.33, 0.48, 0.88, 0.10]
SCIPY = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_point_estimates_and_p_values_match_scipy(method):
    got = correlate(X, Y, n_boot=0)[method]
    ref = SCIPY[method](X, Y)
    assert got.defined and got.reason == ""
    assert got.r == pytest.approx(ref.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(ref.pvalue, abs=1e-12)
    assert got.n == len(X)


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_batched_correlation_matches_scipy_row_by_row(method):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(50, 7)).astype(float)  # many ties: exercises tau-b and average ranks
    y = x + rng.integers(-2, 3, size=(50, 7))
    x[0] = 1.0  # a constant row -> NaN
    got = batched_correlation(x, y, method)
    assert math.isnan(got[0])
    for b in range(1, 50):
        if np.ptp(y[b]) == 0:
            assert math.isnan(got[b])
            continue
        assert got[b] == pytest.approx(SCIPY[method](x[b], y[b]).statistic, abs=1e-12)


def test_bootstrap_is_seeded_reproducible_and_matches_a_loop():
    a = correlate(X, Y, n_boot=300, seed=7)
    b = correlate(X, Y, n_boot=300, seed=7)
    c = correlate(X, Y, n_boot=300, seed=8)
    assert a == b
    assert (a["pearson"].ci_low, a["pearson"].ci_high) != (c["pearson"].ci_low, c["pearson"].ci_high)
    # independent reference: the same draws, scipy on each resample, percentiles of the defined ones
    idx = np.random.default_rng(7).integers(0, len(X), size=(300, len(X)))
    x, y = np.asarray(X), np.asarray(Y)
    for method in ("pearson", "spearman", "kendall"):
        rs = []
        for row in idx:
            if np.ptp(x[row]) == 0 or np.ptp(y[row]) == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rs.append(SCIPY[method](x[row], y[row]).statistic)
        low, high = np.quantile(rs, [0.025, 0.975])
        got = a[method]
        assert got.n_boot == 300 and got.n_boot_defined == len(rs)
        assert got.ci_low == pytest.approx(low, abs=1e-9)
        assert got.ci_high == pytest.approx(high, abs=1e-9)
        assert got.ci_low <= got.r <= got.ci_high


def test_constant_series_is_reported_undefined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning would fail the test
        out = correlate([0.5, 0.5, 0.5, 0.5], [0.1, 0.4, 0.2, 0.9], names=("accuracy", "confidence"))
    for c in out.values():
        assert not c.defined
        assert math.isnan(c.r) and math.isnan(c.p_value)
        assert "accuracy is constant (every value is 0.5)" in c.reason
        assert c.to_json()["r"] is None  # JSON: null, never NaN
    short = correlate([1, 2], [2, 1])["pearson"]
    assert not short.defined and "at least 3 paired values, got 2" in short.reason


def test_correlate_bad_input():
    with pytest.raises(ValueError, match="equal length, got 3 and 2"):
        correlate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite value nan at index 1"):
        correlate([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(ValueError, match="methods among"):
        correlate([1, 2, 3], [1, 2, 3], methods=["cosine"])
    with pytest.raises(ValueError, match="n_boot"):
        correlate([1, 2, 3], [1, 2, 3], n_boot=-1)
    with pytest.raises(ValueError, match=r"`ci` in \(0, 1\)"):
        correlate([1, 2, 3], [1, 2, 3], ci=95)
