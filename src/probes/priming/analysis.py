"""Does the keyword's probability before learning predict priming? (Sun et al. 2025, arXiv 2504.09522)

:func:`analyze_priming` takes one ``P_before`` and one ``S_prime`` per learning sample and returns
the Pearson and Spearman correlations of ``log10 P_before`` with ``log10 S_prime`` (scipy, with
p-values), and the threshold on ``P_before`` that best separates primed samples (``S_prime`` above
a user cut-off) from unprimed ones, with its balanced accuracy and a seeded bootstrap confidence
interval. The paper reports priming for keywords with ``P_before`` below about 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Union

import numpy as np
from scipy import stats

__all__ = [
    "CorrelationCI",
    "PrimingAnalysis",
    "analyze_priming",
    "balanced_accuracy",
    "best_threshold",
    "correlation_ci",
    "threshold_sweep",
]

ArrayLike = Union[Sequence[float], np.ndarray, Any]


def _as_array(values: ArrayLike, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor: one bulk transfer
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"Expected `{what}` to be one value per sample (1-D), got shape {arr.shape}.")
    return arr


def balanced_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates of boolean predictions.

    Raises:
        ValueError: ``actual`` has only one class (the rate of the other is undefined).
    """
    predicted, actual = np.asarray(predicted, bool), np.asarray(actual, bool)
    n_pos, n_neg = int(actual.sum()), int((~actual).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"Balanced accuracy needs both classes; got {n_pos} primed and {n_neg} unprimed samples.")
    return 0.5 * (float((predicted & actual).sum()) / n_pos + float((~predicted & ~actual).sum()) / n_neg)


def _log10(values: np.ndarray, what: str, log10: bool) -> np.ndarray:
    """``log10`` of positive values (no floor), or the values themselves when they are logs already."""
    if log10:
        return values
    bad = (values <= 0) & ~np.isnan(values)
    if bad.any():
        raise ValueError(
            f"`{what}` holds {int(bad.sum())} value(s) <= 0 (e.g. {values[bad][0]!r}), whose log is undefined. Pass"
            " log10 values with log10=True instead (a PrimingProbe record has log10_p_before_seq,"
            " log10_s_prime_seq and their _first variants, exact even where probabilities underflow)."
        )
    with np.errstate(divide="ignore"):
        return np.log10(values)


def best_threshold(p_before: ArrayLike, primed: ArrayLike, *, log10: bool = False) -> tuple[float, float]:
    """The threshold on ``P_before`` that best separates primed samples, predicted as ``P_before < t``.

    Candidates are the geometric midpoints between consecutive distinct values of ``P_before``
    (no floor), plus one below all and one above all values. With ``log10=True``, ``p_before``
    holds log10 probabilities and the threshold is returned as a log10 value too. The candidate with the
    highest balanced accuracy wins; among equal candidates the middle one (in sorted order).

    Returns:
        ``(threshold, balanced_accuracy)``.

    Raises:
        ValueError: mismatched lengths, or a single class.
    """
    x = _log10(_as_array(p_before, "p_before"), "p_before", log10)
    y = np.asarray(primed, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"Expected one `primed` flag per sample: {x.shape[0]} values and {y.shape[0]} flags.")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"Cannot place a threshold: {n_pos} primed and {n_neg} unprimed samples; choose a priming cut-off"
            " between the smallest and the largest S_prime."
        )
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    ends = np.flatnonzero(np.r_[xs[1:] != xs[:-1], True])  # last index of each distinct value
    unique = xs[ends]
    tp = np.r_[0, np.cumsum(ys)[ends]]  # primed among values <= each distinct value (0 for "none")
    fp = np.r_[0, np.cumsum(~ys)[ends]]
    ba = 0.5 * (tp / n_pos + (n_neg - fp) / n_neg)
    candidates = np.r_[unique[0] - 1.0, (unique[:-1] + unique[1:]) / 2.0, unique[-1] + 1.0]
    best = np.flatnonzero(ba >= ba.max() - 1e-12)
    pick = best[len(best) // 2]
    return float(candidates[pick] if log10 else 10.0 ** candidates[pick]), float(ba[pick])


@dataclass(frozen=True)
class PrimingAnalysis:
    """Result of :func:`analyze_priming` (all plain floats/ints: JSON-serialisable via :meth:`to_dict`).

    Attributes:
        n: samples analysed; n_dropped: samples left out (NaN: no baseline yet).
        pearson_r, pearson_p: Pearson correlation of log10 P_before with log10 S_prime, and p-value.
        spearman_rho, spearman_p: Spearman rank correlation and p-value.
        prime_cutoff: a sample is primed when S_prime > prime_cutoff; n_primed: how many are.
        threshold: best P_before threshold (primed predicted when P_before < threshold).
        balanced_accuracy: of that threshold on these samples.
        threshold_ci, balanced_accuracy_ci: bootstrap percentile intervals at ``confidence``.
        n_bootstrap: resamples with both classes (used for the intervals); seed: their seed.
    """

    n: int
    n_dropped: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    prime_cutoff: float
    n_primed: int
    threshold: float
    balanced_accuracy: float
    threshold_ci: tuple[float, float]
    balanced_accuracy_ci: tuple[float, float]
    confidence: float
    n_bootstrap: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A few human-readable lines."""
        lo, hi = self.threshold_ci
        blo, bhi = self.balanced_accuracy_ci
        pct = round(100 * self.confidence)
        head = [
            f"samples: {self.n} ({self.n_dropped} without baseline left out), primed (S_prime >"
            f" {self.prime_cutoff:g}): {self.n_primed}",
            f"Pearson r(log10 P_before, log10 S_prime) = {self.pearson_r:+.3f} (p = {self.pearson_p:.2g})",
            f"Spearman rho = {self.spearman_rho:+.3f} (p = {self.spearman_p:.2g})",
        ]
        if math.isnan(self.threshold):
            return "\n".join([*head, "no threshold: the cut-off puts every sample on the same side"])
        return "\n".join(
            [
                *head,
                f"best threshold: P_before < {self.threshold:.3g} -> primed; balanced accuracy"
                f" {self.balanced_accuracy:.3f}",
                f"  {pct}% bootstrap CI ({self.n_bootstrap} resamples): threshold [{lo:.3g}, {hi:.3g}],"
                f" balanced accuracy [{blo:.3f}, {bhi:.3f}]",
            ]
        )


def analyze_priming(
    p_before: ArrayLike,
    s_prime: ArrayLike,
    *,
    prime_cutoff: float,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    log10: bool = False,
) -> PrimingAnalysis:
    """Correlations of log P_before with log S_prime, and the best separating threshold.

    Args:
        p_before: per-sample baseline keyword probability (for example
            ``PrimingProbe.latest()["p_before"]``), > 0; or its log10 with ``log10=True``.
        s_prime: per-sample priming score, same order.
        prime_cutoff: a sample counts as primed when ``s_prime > prime_cutoff`` (e.g. 10).
        n_bootstrap: bootstrap resamples for the confidence intervals (0 to skip them).
        confidence: level of the percentile intervals.
        seed: seed of the resampling generator (results are reproducible).
        log10: the two inputs are log10 values (e.g. ``log10_p_before_seq`` and
            ``log10_s_prime_seq`` of a record); ``prime_cutoff`` is still an S_prime value. No floor
            is applied in either case.

    Returns:
        A :class:`PrimingAnalysis`. When the cut-off leaves every sample on one side (all primed
        or none), the threshold, its balanced accuracy and their intervals are NaN.

    Raises:
        ValueError: mismatched lengths, fewer than 3 usable samples, a non-positive cut-off, or an
            invalid ``n_bootstrap`` / ``confidence``.
    """
    p = _as_array(p_before, "p_before")
    s = _as_array(s_prime, "s_prime")
    if p.shape != s.shape:
        raise ValueError(f"Expected one S_prime per P_before, got {p.shape[0]} and {s.shape[0]} values.")
    if not isinstance(prime_cutoff, (int, float)) or not prime_cutoff > 0:
        raise ValueError(f"Expected `prime_cutoff` > 0 (an S_prime value, e.g. 10), got {prime_cutoff!r}.")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"Expected `n_bootstrap` to be an int >= 0, got {n_bootstrap!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"Expected `confidence` in (0, 1), got {confidence!r}.")
    keep = ~(np.isnan(p) | np.isnan(s))
    p, s = p[keep], s[keep]
    if p.size < 3:
        raise ValueError(f"Need at least 3 samples with a baseline and a score, got {p.size}.")
    lp = _log10(p, "p_before", log10)
    ls = _log10(s, "s_prime", log10)
    if not (np.isfinite(lp).all() and np.isfinite(ls).all()):
        raise ValueError("`p_before` and `s_prime` must be finite (an S_prime of inf overflowed: pass log10 values).")
    pearson = stats.pearsonr(lp, ls)
    spearman = stats.spearmanr(lp, ls)
    primed = ls > math.log10(prime_cutoff)
    one_class = bool(primed.all() or not primed.any())
    if one_class:  # no threshold to place; the correlations still stand
        threshold, ba = math.nan, math.nan
    else:
        threshold, ba = best_threshold(lp, primed, log10=True)
        threshold = float(10.0**threshold)

    rng = np.random.default_rng(seed)
    boot_t: list[float] = []
    boot_ba: list[float] = []
    for _ in range(0 if one_class else n_bootstrap):
        idx = rng.integers(0, p.size, p.size)
        y = primed[idx]
        if y.all() or not y.any():
            continue
        t_b, ba_b = best_threshold(lp[idx], y, log10=True)
        boot_t.append(t_b)
        boot_ba.append(ba_b)
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    if boot_t:
        t_lo, t_hi = (float(10.0**v) for v in np.percentile(boot_t, q))
        b_lo, b_hi = (float(v) for v in np.percentile(boot_ba, q))
    else:
        t_lo = t_hi = b_lo = b_hi = math.nan
    return PrimingAnalysis(
        n=int(p.size),
        n_dropped=int((~keep).sum()),
        pearson_r=float(pearson[0]),
        pearson_p=float(pearson[1]),
        spearman_rho=float(spearman[0]),
        spearman_p=float(spearman[1]),
        prime_cutoff=float(prime_cutoff),
        n_primed=int(primed.sum()),
        threshold=threshold,
        balanced_accuracy=ba,
        threshold_ci=(t_lo, t_hi),
        balanced_accuracy_ci=(b_lo, b_hi),
        confidence=float(confidence),
        n_bootstrap=len(boot_t),
        seed=int(seed),
    )


@dataclass(frozen=True)
class CorrelationCI:
    """A correlation with its p-value and a seeded percentile-bootstrap interval (resampling pairs)."""

    method: str
    n: int
    r: float
    p: float
    ci: tuple[float, float]
    confidence: float

    def format(self) -> str:
        lo, hi = self.ci
        return f"{self.method} r = {self.r:+.2f} [{lo:+.2f}, {hi:+.2f}] (n = {self.n}, p = {self.p:.2g})"


def correlation_ci(
    x: ArrayLike, y: ArrayLike, *, method: str = "pearson", n_bootstrap: int = 2000, confidence: float = 0.95,
    seed: int = 0,
) -> CorrelationCI:
    """Pearson or Spearman correlation of ``x`` and ``y`` (scipy) with a bootstrap interval.

    Resamples that leave one variable constant are skipped. NaN pairs are dropped first.

    Raises:
        ValueError: an unknown method, mismatched lengths, or fewer than 3 pairs.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"Expected `method` to be 'pearson' or 'spearman', got {method!r}.")
    a, b = _as_array(x, "x"), _as_array(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"Expected x and y of one length, got {a.size} and {b.size}.")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size < 3:
        raise ValueError(f"Need at least 3 pairs for a correlation, got {a.size}.")
    fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    r, p = (float(v) for v in fn(a, b))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, a.size, a.size)
        if np.ptp(a[idx]) == 0 or np.ptp(b[idx]) == 0:
            continue
        boot.append(float(fn(a[idx], b[idx])[0]))
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    lo, hi = (float(v) for v in np.percentile(boot, q)) if boot else (math.nan, math.nan)
    return CorrelationCI(method, int(a.size), r, p, (lo, hi), float(confidence))


def threshold_sweep(
    log10_p_before: ArrayLike, log10_s_prime: ArrayLike, cuts: Sequence[float], *, n_bootstrap: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> list[dict[str, Any]]:
    """For every cut ``c`` on log10 S_prime (primed: S_prime > 10**c), the best threshold on
    P_before and its balanced accuracy, each with a bootstrap interval: the threshold reported
    as a function of the arbitrary priming cut-off rather than as one number.

    Returns:
        One dict per cut: ``log10_cut``, ``n_primed``, ``n``, ``log10_threshold`` and its interval,
        ``balanced_accuracy`` and its interval (NaN where the cut leaves one class).
    """
    lp = _as_array(log10_p_before, "log10_p_before")
    ls = _as_array(log10_s_prime, "log10_s_prime")
    rows = []
    for cut in cuts:
        a = analyze_priming(lp, ls, prime_cutoff=10.0**cut, n_bootstrap=n_bootstrap, confidence=confidence,
                            seed=seed, log10=True)
        log_t = math.log10(a.threshold) if a.threshold > 0 else math.nan
        t_lo, t_hi = (math.log10(v) if v > 0 else math.nan for v in a.threshold_ci)
        rows.append({
            "log10_cut": float(cut), "n": a.n, "n_primed": a.n_primed, "log10_threshold": log_t,
            "log10_threshold_ci": (t_lo, t_hi), "balanced_accuracy": a.balanced_accuracy,
            "balanced_accuracy_ci": a.balanced_accuracy_ci,
        })
    return rows
