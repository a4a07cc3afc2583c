"""Frequency fit: recovers a known log-linear slope; binned variant against a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from probes.analysis.frequency import binned_frequency, frequency_fit


def test_noise_free_slope_is_recovered_exactly():
    counts = [1, 3, 10, 30, 100, 1000, 10000]
    scores = [0.05 + 0.12 * math.log10(c) for c in counts]
    fit = frequency_fit(counts, scores)
    assert fit.defined
    assert fit.slope == pytest.approx(0.12, abs=1e-12)
    assert fit.intercept == pytest.approx(0.05, abs=1e-12)
    assert fit.r == pytest.approx(1.0, abs=1e-12)
    assert fit.predict([100]) == pytest.approx([0.29])


def test_noisy_slope_is_recovered_and_matches_independent_least_squares():
    rng = np.random.default_rng(0)
    counts = np.floor(10 ** rng.uniform(0, 5, 400)) + 1
    scores = 0.1 + 0.15 * np.log10(counts) + rng.normal(0, 0.05, 400)
    counts[:20] = 0  # never seen: excluded, counted
    fit = frequency_fit(counts, scores)
    assert fit.n == 380 and fit.n_excluded == 20
    assert fit.slope == pytest.approx(0.15, abs=0.01)  # the known slope, within noise
    keep = counts >= 1
    slope, intercept = np.polyfit(np.log10(counts[keep]), scores[keep], 1)
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    ref = stats.pearsonr(np.log10(counts[keep]), scores[keep])
    assert fit.r == pytest.approx(ref.statistic, rel=1e-9)
    assert fit.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    assert fit.to_json()["slope_per_decade"] == pytest.approx(fit.slope)


def test_binned_variant_matches_a_loop():
    rng = np.random.default_rng(1)
    counts = np.floor(10 ** rng.uniform(0, 4, 100)) + 1
    scores = rng.uniform(0, 1, 100)
    binned = binned_frequency(counts, scores, n_bins=5)
    lo, hi = np.log10(counts.min()), np.log10(counts.max())
    width = (hi - lo) / 5
    for b in range(5):
        members = [
            s
            for c, s in zip(counts, scores)
            if lo + b * width <= np.log10(c) < lo + (b + 1) * width or (b == 4 and c == counts.max())
        ]
        assert binned.count[b] == len(members)
        assert binned.mean_score[b] == pytest.approx(np.mean(members))
    assert binned.count.sum() == 100
    assert binned.edges[0] == pytest.approx(counts.min()) and binned.edges[-1] == pytest.approx(counts.max())
    assert binned.centers[0] == pytest.approx(math.sqrt(binned.edges[0] * binned.edges[1]))


def test_undefined_fits_say_why():
    flat = frequency_fit([1, 10, 100], [0.3, 0.3, 0.3])
    assert not flat.defined and "every score is 0.3" in flat.reason and math.isnan(flat.slope)
    same = frequency_fit([5, 5, 5, 5], [0.1, 0.2, 0.3, 0.4])
    assert not same.defined and "every count is 5" in same.reason
    few = frequency_fit([0, 0, 10, 100], [0.0, 0.1, 0.2, 0.3])
    assert not few.defined and "at least 3 concepts" in few.reason and few.n_excluded == 2
    assert few.to_json()["slope_per_decade"] is None


def test_frequency_bad_input():
    with pytest.raises(ValueError, match="one score per count, got 3 counts and 2 scores"):
        frequency_fit([1, 2, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"negative count -1\.0 at index 1"):
        frequency_fit([1, -1, 3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite value inf at index 2"):
        frequency_fit([1, 2, 3], [0.1, 0.2, float("inf")])
    with pytest.raises(ValueError, match="1-D"):
        frequency_fit([[1, 2]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="Lower `min_count`"):
        binned_frequency([0, 0], [0.1, 0.2])
