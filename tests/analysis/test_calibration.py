"""Pure calibration math against brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes.choice.calibration import (
    choice_stats,
    expected_calibration_error,
    grouped_expected_calibration_error,
    grouped_mean,
    reliability_bins,
)
from tests.analysis._util import brute_force_ece


def test_ece_hand_computed_example():
    # bins (0.8, 0.9] and (0.5, 0.6]: (|1 - 0.9| + |0 - 0.6|) / 2
    assert expected_calibration_error([0.9, 0.6], [True, False]).item() == pytest.approx(0.35, abs=1e-12)
    # a perfectly calibrated bin: 4 predictions at 0.75, 3 right
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_ece_matches_bin_loop(n_bins):
    rng = np.random.default_rng(n_bins)
    conf = rng.uniform(0, 1, 200)
    conf[:3] = [0.0, 1.0, 0.5]  # edges: 0 -> first bin, 1 -> last bin
    correct = rng.uniform(0, 1, 200) < conf
    got = expected_calibration_error(torch.tensor(conf), torch.tensor(correct), n_bins=n_bins).item()
    assert got == pytest.approx(brute_force_ece(conf.tolist(), correct.tolist(), n_bins), abs=1e-12)


def test_grouped_ece_equals_ece_of_each_group():
    rng = np.random.default_rng(3)
    conf = torch.tensor(rng.uniform(0.2, 1, 90))
    correct = torch.tensor(rng.uniform(0, 1, 90) < 0.6)
    group = torch.tensor(rng.integers(0, 3, 90))
    got = grouped_expected_calibration_error(conf, correct, group, 4, n_bins=10)
    for g in range(3):
        sel = (group == g).numpy()
        ref = brute_force_ece(conf.numpy()[sel].tolist(), correct.numpy()[sel].tolist(), 10)
        assert got[g].item() == pytest.approx(ref, abs=1e-12)
    assert math.isnan(got[3].item())  # an empty group is NaN, not 0
    means = grouped_mean(conf, group, 3)
    for g in range(3):
        assert means[g].item() == pytest.approx(conf.numpy()[(group == g).numpy()].mean(), abs=1e-12)


def test_reliability_bins_match_loop():
    conf = [0.05, 0.15, 0.12, 0.95, 1.0, 0.55]
    correct = [0, 1, 0, 1, 1, 0]
    bins = reliability_bins(conf, correct, n_bins=10)
    assert bins.count.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins.confidence[1].item() == pytest.approx((0.15 + 0.12) / 2)
    assert bins.accuracy[9].item() == pytest.approx(1.0)
    assert math.isnan(bins.accuracy[2].item())


def test_choice_stats_match_loop():
    torch.manual_seed(0)
    scores = torch.randn(6, 4) * 3
    valid = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    answer = torch.tensor([1, 0, 3, 0, 2, 1])
    scores[3, :2] = 1.5  # an exact tie: the earlier option is chosen
    stats = choice_stats(scores, valid, answer)
    for q in range(6):
        s = [scores[q, k].item() for k in range(4) if valid[q, k]]
        z = sum(math.exp(v) for v in s)
        probs = [math.exp(v) / z for v in s]
        k = s.index(max(s))
        assert stats.pred[q].item() == k
        assert stats.correct[q].item() == (k == answer[q].item())
        assert stats.p_chosen[q].item() == pytest.approx(probs[k], rel=1e-5)
        assert stats.p_correct[q].item() == pytest.approx(probs[answer[q].item()], rel=1e-5)
    assert stats.pred[3].item() == 0


def test_calibration_bad_input():
    with pytest.raises(ValueError, match=r"confidence in \[0, 1\], got 1.5"):
        expected_calibration_error([0.5, 1.5], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error([0.5, 0.5], [1])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="empty"):
        expected_calibration_error([], [])
    with pytest.raises(ValueError, match="'chosen' or 'correct'"):
        choice_stats(
            torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, dtype=torch.long)
        ).confidence(
            "max"  # type: ignore[arg-type]
        )
