"""Exposure-frequency analysis: how performance on a concept grows with how often it was seen
(Udandarao et al. 2024, arXiv 2404.04125: performance is linear in the *log* of the concept's
pretraining frequency, so a linear gain needs exponentially more data).

Inputs are plain arrays: per concept, its cumulative exposure count (from any exposure counter,
e.g. :class:`~probes.priming.probe.PrimingProbe`'s ``exposures``, or a string count
over the training text) and a score (a probe probability, a log-probability, or a benchmark
accuracy). Concepts seen fewer than ``min_count`` times (default 1: never-seen concepts, whose
log count is -inf) are left out of the fit and counted in ``n_excluded``.

* :func:`frequency_fit`: least squares of ``score = intercept + slope * log10(count)``; ``slope``
  is the gain per tenfold (one decade) more exposure; Pearson ``r`` and its p-value from scipy.
* :func:`binned_frequency`: the paper's binned view: concepts grouped into equal-width bins of
  ``log10(count)``, with the mean score and the number of concepts per bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import stats

__all__ = ["BinnedFrequency", "FrequencyFit", "binned_frequency", "frequency_fit"]


def _nan_to_none(value: float) -> Optional[float]:
    return None if math.isnan(value) else float(value)


def _inputs(counts: object, scores: object, min_count: float) -> tuple[np.ndarray, np.ndarray, int]:
    if np.ndim(counts) != 1 or np.ndim(scores) != 1:
        raise ValueError(
            f"Expected `counts` and `scores` to be 1-D (one value per concept), got {np.ndim(counts)}-D and"
            f" {np.ndim(scores)}-D."
        )
    c = np.asarray(counts, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if c.shape != s.shape:
        raise ValueError(f"Expected one score per count, got {c.size} counts and {s.size} scores.")
    if not isinstance(min_count, (int, float)) or isinstance(min_count, bool) or not min_count > 0:
        raise ValueError(f"Expected `min_count` to be a positive number (log10 needs counts > 0), got {min_count!r}.")
    for arr, what in ((c, "counts"), (s, "scores")):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"`{what}` has a non-finite value {float(arr[bad[0]])!r} at index {int(bad[0])}.")
    neg = np.flatnonzero(c < 0)
    if neg.size:
        raise ValueError(f"`counts` has a negative count {float(c[neg[0]])!r} at index {int(neg[0])}; counts are >= 0.")
    keep = c >= min_count
    return c[keep], s[keep], int((~keep).sum())


@dataclass(frozen=True)
class FrequencyFit:
    """Linear fit of score against log10 exposure count.

    Attributes:
        slope: score gained per decade (tenfold) of exposure.
        intercept: predicted score at one exposure (log10 count = 0).
        r: Pearson correlation of score with log10 count.
        p_value: two-sided p-value of ``r`` (scipy), the same as the slope's.
        stderr: standard error of the slope.
        n: concepts used in the fit.
        n_excluded: concepts below ``min_count`` (left out).
        defined: False when the fit does not exist (fewer than 3 concepts, or every count or
            every score equal); the numbers are then NaN.
        reason: why it is undefined ("" when defined).
    """

    slope: float
    intercept: float
    r: float
    p_value: float
    stderr: float
    n: int
    n_excluded: int
    defined: bool
    reason: str = ""

    def predict(self, counts: object) -> np.ndarray:
        """Fitted score at ``counts`` exposures."""
        return self.intercept + self.slope * np.log10(np.asarray(counts, dtype=np.float64))

    def to_json(self) -> dict[str, Any]:
        return {
            "slope_per_decade": _nan_to_none(self.slope),
            "intercept": _nan_to_none(self.intercept),
            "r": _nan_to_none(self.r),
            "p_value": _nan_to_none(self.p_value),
            "stderr": _nan_to_none(self.stderr),
            "n": self.n,
            "n_excluded": self.n_excluded,
            "defined": self.defined,
            "reason": self.reason,
        }


def frequency_fit(counts: object, scores: object, *, min_count: float = 1) -> FrequencyFit:
    """Fit ``score = intercept + slope * log10(count)`` over concepts with ``count >= min_count``.

    Args:
        counts: ``[n_concepts]`` cumulative exposure counts (>= 0).
        scores: ``[n_concepts]`` performance per concept (accuracy, probability, log-prob...).
        min_count: concepts seen fewer times are excluded (default 1: drop never-seen ones).

    Returns:
        A :class:`FrequencyFit`; ``defined=False`` with a ``reason`` when the data cannot
        determine a line (never a silent NaN).

    Raises:
        ValueError: arrays of different lengths, non-finite values, negative counts.

    Example::

        fit = frequency_fit([1, 10, 100, 1000], [0.1, 0.3, 0.5, 0.7])
        fit.slope  # 0.2 per decade
    """
    c, s, n_excluded = _inputs(counts, scores, min_count)
    nan = math.nan
    reason = ""
    if c.size < 3:
        reason = f"needs at least 3 concepts with count >= {min_count:g}, got {c.size}"
    elif np.ptp(c) == 0:
        reason = f"every count is {c[0]:g}: the slope against log count is undefined"
    elif np.ptp(s) == 0:
        reason = f"every score is {s[0]:.6g}: the correlation is undefined"
    if reason:
        return FrequencyFit(nan, nan, nan, nan, nan, int(c.size), n_excluded, False, reason)
    res = stats.linregress(np.log10(c), s)
    return FrequencyFit(
        slope=float(res.slope),
        intercept=float(res.intercept),
        r=float(res.rvalue),
        p_value=float(res.pvalue),
        stderr=float(res.stderr),
        n=int(c.size),
        n_excluded=n_excluded,
        defined=True,
    )


@dataclass(frozen=True)
class BinnedFrequency:
    """Mean score per log-count bin.

    Attributes:
        edges: ``[n_bins + 1]`` bin edges in *counts* (equal-width in log10 count).
        centers: ``[n_bins]`` geometric centres of the bins, in counts.
        mean_score: ``[n_bins]`` mean score of the concepts in each bin (NaN for an empty bin;
            check ``count``).
        count: ``[n_bins]`` concepts per bin.
        n_excluded: concepts below ``min_count`` (left out).
    """

    edges: np.ndarray
    centers: np.ndarray
    mean_score: np.ndarray
    count: np.ndarray
    n_excluded: int

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "centers": self.centers.tolist(),
            "mean_score": [_nan_to_none(float(v)) for v in self.mean_score],
            "count": self.count.tolist(),
            "n_excluded": self.n_excluded,
        }


def binned_frequency(counts: object, scores: object, *, n_bins: int = 8, min_count: float = 1) -> BinnedFrequency:
    """Group concepts into ``n_bins`` equal-width bins of log10 count and average their scores.

    Bins span ``[min count, max count]``; bin ``i`` holds counts in ``[e_i, e_{i+1})`` and the
    last bin also holds the maximum.

    Raises:
        ValueError: bad arrays (see :func:`frequency_fit`), ``n_bins < 1``, or no concept with
            ``count >= min_count``.
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"Expected `n_bins` to be a positive int, got {n_bins!r}.")
    c, s, n_excluded = _inputs(counts, scores, min_count)
    if c.size == 0:
        raise ValueError(
            f"No concept has count >= {min_count:g} ({n_excluded} excluded): nothing to bin. Lower `min_count`."
        )
    lo, hi = np.log10(c.min()), np.log10(c.max())
    if hi == lo:
        hi = lo + 1.0  # one distinct count: a single decade-wide range, everything in bin 0
    log_edges = np.linspace(lo, hi, n_bins + 1)
    which = np.clip(np.searchsorted(log_edges, np.log10(c), side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    total = np.bincount(which, weights=s, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return BinnedFrequency(
        edges=10.0**log_edges,
        centers=10.0 ** ((log_edges[:-1] + log_edges[1:]) / 2),
        mean_score=mean,
        count=count.astype(np.int64),
        n_excluded=n_excluded,
    )
