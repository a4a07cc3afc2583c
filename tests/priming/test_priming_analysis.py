"""Threshold and correlation analysis against brute force and textbook formulas, on synthetic data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from probes.analysis import analyze_priming, balanced_accuracy, best_threshold


def brute_force_best(p_before: np.ndarray, primed: np.ndarray) -> float:
    """Best balanced accuracy over every threshold, by a plain loop over midpoints."""
    xs = sorted(set(np.log10(p_before).tolist()))
    candidates = [xs[0] - 1] + [(a + b) / 2 for a, b in itertools.pairwise(xs)] + [xs[-1] + 1]
    best = 0.0
    pos, neg = sum(primed), len(primed) - sum(primed)
    for c in candidates:
        tp = sum(1 for x, y in zip(np.log10(p_before), primed) if x < c and y)
        tn = sum(1 for x, y in zip(np.log10(p_before), primed) if x >= c and not y)
        best = max(best, 0.5 * (tp / pos + tn / neg))
    return best


def synthetic(n: int, seed: int, flip: float) -> tuple[np.ndarray, np.ndarray]:
    """P_before log-uniform in [1e-8, 1]; S_prime high below the true threshold 1e-3, with label noise."""
    rng = np.random.default_rng(seed)
    p = 10.0 ** rng.uniform(-8, 0, n)
    primed = p < 1e-3
    primed ^= rng.random(n) < flip
    s = np.where(primed, 10.0 ** rng.uniform(1.5, 4, n), 10.0 ** rng.uniform(-0.5, 0.9, n))
    return p, s


def test_balanced_accuracy_by_hand() -> None:
    actual = np.array([1, 1, 1, 0, 0], bool)
    predicted = np.array([1, 0, 1, 0, 1], bool)
    assert balanced_accuracy(predicted, actual) == pytest.approx(0.5 * (2 / 3 + 1 / 2))
    with pytest.raises(ValueError, match="both classes"):
        balanced_accuracy(predicted, np.ones(5, bool))


def test_best_threshold_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(4)
    p = 10.0 ** rng.integers(-6, 0, 40).astype(float)  # many tied values
    primed = rng.random(40) < 0.5
    threshold, ba = best_threshold(p, primed)
    assert ba == pytest.approx(brute_force_best(p, primed), abs=1e-12)
    assert balanced_accuracy(p < threshold, primed) == pytest.approx(ba, abs=1e-12)


def test_recovers_a_clean_known_threshold() -> None:
    p, s = synthetic(200, seed=0, flip=0.0)
    result = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=300, seed=1)
    below, above = p[p < 1e-3].max(), p[p >= 1e-3].min()
    assert result.balanced_accuracy == 1.0
    assert below < result.threshold < above  # inside the gap around 1e-3
    assert result.threshold == pytest.approx(math.sqrt(below * above), rel=1e-9)  # the geometric midpoint
    lo, hi = result.threshold_ci
    assert lo <= 1e-3 <= hi and 10**-3.5 < lo and hi < 10**-2.5
    assert result.n_primed == int((p < 1e-3).sum())


def test_recovers_a_noisy_threshold_reproducibly() -> None:
    p, s = synthetic(300, seed=2, flip=0.1)
    a = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=400, seed=7)
    b = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=400, seed=7)
    c = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=400, seed=8)
    assert a == b and a.threshold_ci != c.threshold_ci  # seeded bootstrap
    assert 10**-3.5 < a.threshold < 10**-2.5
    assert a.balanced_accuracy == pytest.approx(brute_force_best(p, s > 10.0), abs=1e-12)
    assert 0.8 < a.balanced_accuracy_ci[0] <= a.balanced_accuracy_ci[1] <= 1.0
    assert a.threshold_ci[0] < 1e-3 < a.threshold_ci[1]
    assert a.n_bootstrap == 400


def test_correlations_against_textbook_formulas() -> None:
    p, s = synthetic(50, seed=3, flip=0.2)
    result = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=0)
    x, y = np.log10(p), np.log10(s)
    r = float(np.corrcoef(x, y)[0, 1])
    t = r * math.sqrt((len(x) - 2) / (1 - r * r))
    assert result.pearson_r == pytest.approx(r, abs=1e-12)
    assert result.pearson_p == pytest.approx(2 * stats.t.sf(abs(t), len(x) - 2), rel=1e-6)
    ranks = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731 (no ties in continuous data)
    rho = float(np.corrcoef(ranks(x), ranks(y))[0, 1])
    assert result.spearman_rho == pytest.approx(rho, abs=1e-12)
    assert result.pearson_r < -0.3 and result.pearson_p < 0.01  # low P_before goes with high priming here
    assert math.isnan(result.threshold_ci[0]) and result.n_bootstrap == 0


def test_missing_baselines_one_class_and_bad_input() -> None:
    p, s = synthetic(20, seed=5, flip=0.0)
    p[[0, 3]] = np.nan
    result = analyze_priming(p, s, prime_cutoff=10.0, n_bootstrap=50)
    assert (result.n, result.n_dropped) == (18, 2)
    flat = analyze_priming(p, s, prime_cutoff=1e9, n_bootstrap=50)  # nothing is primed
    assert flat.n_primed == 0 and math.isnan(flat.threshold) and "no threshold" in flat.format()
    assert "Spearman" in result.format() and "balanced accuracy" in result.format()
    with pytest.raises(ValueError, match="one S_prime per P_before"):
        analyze_priming(p, s[:-1], prime_cutoff=10.0)
    with pytest.raises(ValueError, match="at least 3 samples"):
        analyze_priming([0.1, 0.2], [1.0, 2.0], prime_cutoff=10.0)
    with pytest.raises(ValueError, match="prime_cutoff"):
        analyze_priming(p, s, prime_cutoff=0)
    with pytest.raises(ValueError, match="Cannot place a threshold"):
        best_threshold(np.array([0.1, 0.2]), np.array([True, True]))
