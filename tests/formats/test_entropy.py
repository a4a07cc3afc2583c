"""Entropy, effective number and KL against scipy.stats.entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from probes.formats.entropy import (
    distribution_summary,
    effective_number,
    entropy,
    entropy_bits,
    kl_divergence,
    normalized_entropy,
)


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = [rng.dirichlet(np.ones(k)) for k in (2, 3, 5, 17)]
    cases.append(np.array([0.0, 0.3, 0.0, 0.7]))  # zeros: 0 log 0 = 0
    cases.append(np.array([3.0, 1.0, 0.0, 4.0]))  # counts: normalised first
    cases.append(np.array([1.0, 0.0, 0.0]))  # a point mass
    cases.append(np.array([0.25, 0.25, 0.25, 0.25]))
    return cases


@pytest.mark.parametrize("p", _cases())
def test_entropy_matches_scipy(p):
    t = torch.tensor(p, dtype=torch.float64)
    assert float(entropy(t)) == pytest.approx(scipy_entropy(p), abs=1e-12)
    assert float(entropy_bits(t)) == pytest.approx(scipy_entropy(p, base=2), abs=1e-12)
    assert float(entropy(t, base=10)) == pytest.approx(scipy_entropy(p, base=10), abs=1e-12)
    assert float(normalized_entropy(t)) == pytest.approx(scipy_entropy(p) / math.log(len(p)), abs=1e-12)
    assert float(effective_number(t)) == pytest.approx(math.exp(scipy_entropy(p)), abs=1e-12)


def test_entropy_batched_along_dim():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(6), size=4)  # [4, 6]
    got = entropy(torch.tensor(p), dim=1).numpy()
    np.testing.assert_allclose(got, scipy_entropy(p, axis=1), atol=1e-12)
    got0 = entropy(torch.tensor(p.T), dim=0).numpy()
    np.testing.assert_allclose(got0, scipy_entropy(p.T, axis=0), atol=1e-12)


def test_float32_input_close_to_scipy():
    p = np.array([0.1, 0.2, 0.7])
    assert float(entropy(torch.tensor(p, dtype=torch.float32))) == pytest.approx(scipy_entropy(p), rel=1e-6)


@pytest.mark.parametrize(
    "p,q",
    [
        (np.array([0.2, 0.5, 0.3]), np.array([0.3, 0.3, 0.4])),
        (np.array([0.0, 0.4, 0.6]), np.array([0.5, 0.25, 0.25])),  # p has a zero: term is 0
        (np.array([2.0, 2.0]), np.array([1.0, 3.0])),  # counts
        (np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.5, 0.0])),  # identical with a shared zero
    ],
)
def test_kl_matches_scipy(p, q):
    got = float(kl_divergence(torch.tensor(p), torch.tensor(q)))
    assert got == pytest.approx(scipy_entropy(p, q), abs=1e-12)
    assert float(kl_divergence(torch.tensor(p), torch.tensor(q), base=2)) == pytest.approx(
        scipy_entropy(p, q, base=2), abs=1e-12
    )


def test_kl_infinite_where_reference_has_no_mass():
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    assert scipy_entropy(p, q) == math.inf
    assert float(kl_divergence(torch.tensor(p), torch.tensor(q))) == math.inf


def test_empty_distribution_is_nan_like_scipy():
    z = np.zeros(3)
    with np.errstate(invalid="ignore"):
        assert math.isnan(scipy_entropy(z))
    assert math.isnan(float(entropy(torch.zeros(3))))
    assert math.isnan(float(normalized_entropy(torch.zeros(3))))
    assert math.isnan(float(kl_divergence(torch.zeros(3), torch.ones(3))))


def test_single_category_normalized_entropy_is_zero():
    assert float(normalized_entropy(torch.tensor([5.0]))) == 0.0
    assert float(effective_number(torch.tensor([1.0]))) == 1.0


def test_bad_input_messages():
    with pytest.raises(ValueError, match="non-negative"):
        entropy(torch.tensor([-0.1, 1.1]))
    with pytest.raises(ValueError, match="base"):
        entropy(torch.tensor([0.5, 0.5]), base=1)
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(torch.ones(2), torch.ones(3))


def test_distribution_summary_against_scipy_and_argmax():
    p = np.array([0.1, 0.6, 0.3])
    ref = np.array([0.5, 0.25, 0.25])
    s = distribution_summary(torch.tensor(p), torch.tensor(ref))
    assert float(s["entropy_nats"]) == pytest.approx(scipy_entropy(p), abs=1e-12)
    assert float(s["entropy_bits"]) == pytest.approx(scipy_entropy(p, base=2), abs=1e-12)
    assert float(s["norm_entropy"]) == pytest.approx(scipy_entropy(p) / math.log(3), abs=1e-12)
    assert float(s["eff_formats"]) == pytest.approx(math.exp(scipy_entropy(p)), abs=1e-12)
    assert int(s["dominant"]) == 1 and s["dominant"].dtype == torch.int64
    assert float(s["dominant_share"]) == pytest.approx(0.6)
    assert float(s["kl_from_first"]) == pytest.approx(scipy_entropy(p, ref), abs=1e-12)
    empty = distribution_summary(torch.zeros(3))
    assert int(empty["dominant"]) == -1
    assert all(math.isnan(float(empty[k])) for k in ("entropy_nats", "dominant_share", "kl_from_first"))
