"""Attribution: does an item's probability gain follow how *often* its keyword was seen, or how
*similar* the training samples were to it?

Per item (the unit of analysis): ``y`` = change of its keyword log-probability over a window
(``delta logp``), ``f`` = ``log(1 + keyword occurrences)`` in the window, ``s`` = accumulated
similarity in the window (``lex_sum``, ``rep_sum``, ``jaccard_sum``, ``lex_above`` or ``rep_above``).

* standardized coefficients ``beta_f``, ``beta_s`` of the least-squares fit of ``z(y)`` on
  ``z(f)`` and ``z(s)`` (from the three pairwise Pearson correlations:
  ``beta_f = (r_yf - r_ys r_fs) / (1 - r_fs^2)``);
* partial correlations ``r(y, f | s) = (r_yf - r_ys r_fs) / sqrt((1 - r_ys^2)(1 - r_fs^2))`` and
  ``r(y, s | f)``;
* percentile bootstrap intervals of all four, resampling items with replacement (resamples in
  which a quantity is undefined are dropped and counted);
* the log-linear fit of ``delta logp`` against log10 of the keyword count (after Udandarao et al.
  2024, :func:`probes.analysis.frequency.frequency_fit`; items never seen are left out of that fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from probes.analysis.correlation import bootstrap_indices, percentile_interval
from probes.analysis.frequency import FrequencyFit, frequency_fit

if TYPE_CHECKING:
    from probes.runlog.reader import RunReader

__all__ = ["SIMILARITIES", "Attribution", "attribute", "attribution_from_run"]

#: accumulated-similarity metrics a run can be attributed to
SIMILARITIES = ("lex_sum", "rep_sum", "jaccard_sum", "lex_above", "rep_above")


def _none(value: float) -> Optional[float]:
    return None if not math.isfinite(value) else float(value)


def _stats(y: np.ndarray, f: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``[..., 6]``: r_yf, r_ys, r_fs, beta_f, beta_s, and then partial r_yf|s, r_ys|f stacked as
    ``[..., 7]`` (rows of a bootstrap at once). NaN where undefined."""

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ac = a - a.mean(axis=-1, keepdims=True)
        bc = b - b.mean(axis=-1, keepdims=True)
        den = np.sqrt((ac * ac).sum(axis=-1) * (bc * bc).sum(axis=-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (ac * bc).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)

    ryf, rys, rfs = corr(y, f), corr(y, s), corr(f, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 - rfs**2
        ok = d > 1e-12
        beta_f = np.where(ok, (ryf - rys * rfs) / np.where(ok, d, 1.0), np.nan)
        beta_s = np.where(ok, (rys - ryf * rfs) / np.where(ok, d, 1.0), np.nan)
        pf = (ryf - rys * rfs) / np.sqrt((1 - rys**2) * d)
        ps = (rys - ryf * rfs) / np.sqrt((1 - ryf**2) * d)
    return np.stack([ryf, rys, rfs, beta_f, beta_s, pf, ps], axis=-1)


_NAMES = ("r_frequency", "r_similarity", "r_frequency_similarity", "beta_frequency", "beta_similarity",
          "partial_frequency", "partial_similarity")


@dataclass(frozen=True)
class Attribution:
    """Frequency against similarity as explanations of the per-item gain.

    Attributes:
        n: items used.
        similarity: the accumulated-similarity metric used.
        estimates: name -> point estimate (``beta_frequency``, ``beta_similarity``,
            ``partial_frequency``, ``partial_similarity``, ``r_frequency``, ``r_similarity``,
            ``r_frequency_similarity``).
        intervals: name -> (low, high) percentile bootstrap interval at level ``ci``.
        n_boot_defined: name -> resamples in which it was defined.
        ci: interval level; n_boot: resamples drawn; seed: their seed.
        fit: the log-linear fit of delta logp against log10 keyword count.
        window: (first step, last step) of the change.
        defined: False when the point estimates do not exist (fewer than 4 items, or a constant
            variable, or collinear predictors); ``reason`` says which.
    """

    n: int
    similarity: str
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    n_boot_defined: dict[str, int]
    ci: float
    n_boot: int
    seed: int
    fit: FrequencyFit
    window: tuple[int, int] = (0, 0)
    defined: bool = True
    reason: str = ""

    @property
    def explains(self) -> str:
        """Which variable explains the gain: ``"frequency"`` or ``"similarity"`` when its partial
        correlation's interval excludes 0 and the other's does not, ``"both"``, or ``"neither"``
        (an interval that includes 0, or undefined estimates)."""
        sig = {}
        for key in ("partial_frequency", "partial_similarity"):
            low, high = self.intervals.get(key, (math.nan, math.nan))
            sig[key] = bool(math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0))
        f, s = sig["partial_frequency"], sig["partial_similarity"]
        return "both" if f and s else "frequency" if f else "similarity" if s else "neither"

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "similarity": self.similarity,
            "window": list(self.window),
            "defined": self.defined,
            "reason": self.reason,
            "explains": self.explains,
            "ci": self.ci,
            "n_boot": self.n_boot,
            "estimates": {k: _none(v) for k, v in self.estimates.items()},
            "intervals": {k: [_none(lo), _none(hi)] for k, (lo, hi) in self.intervals.items()},
            "log_linear_fit": self.fit.to_json(),
        }

    def lines(self) -> list[str]:
        """A short text report."""
        if not self.defined:
            return [f"attribution over steps {self.window[0]}..{self.window[1]} undefined: {self.reason}"]
        out = [f"attribution of delta logp over steps {self.window[0]}..{self.window[1]}, {self.n} items,"
               f" similarity = {self.similarity}, {self.ci:.0%} bootstrap intervals ({self.n_boot} resamples):"]
        for key in ("beta_frequency", "beta_similarity", "partial_frequency", "partial_similarity"):
            lo, hi = self.intervals[key]
            out.append(f"  {key:<20} {self.estimates[key]:+.3f}  [{lo:+.3f}, {hi:+.3f}]")
        fit = self.fit
        out.append(
            f"  log-linear fit: {fit.slope:+.3f} nats per decade of keyword count (r {fit.r:+.3f}, n {fit.n})"
            if fit.defined else f"  log-linear fit undefined: {fit.reason}"
        )
        out.append(f"  explains the gain: {self.explains}")
        return out


def attribute(
    delta_logp: object,
    frequency: object,
    similarity: object,
    *,
    similarity_name: str = "similarity",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    window: tuple[int, int] = (0, 0),
) -> Attribution:
    """Attribute per-item gains to ``log(1 + frequency)`` and to accumulated ``similarity``.

    Args:
        delta_logp: ``[n_items]`` change of log-probability (natural log).
        frequency: ``[n_items]`` keyword occurrences (>= 0) in the same window.
        similarity: ``[n_items]`` accumulated similarity in the same window.

    Raises:
        ValueError: arrays of different lengths or non-finite values; bad ``n_boot`` or ``ci``.
    """
    y, fr, s = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (delta_logp, frequency, similarity))
    if not (y.shape == fr.shape == s.shape):
        raise ValueError(f"Expected one value per item in each input, got {y.size}, {fr.size} and {s.size}.")
    for arr, what in ((y, "delta_logp"), (fr, "frequency"), (s, "similarity")):
        if not np.isfinite(arr).all():
            raise ValueError(f"`{what}` has a non-finite value; drop such items first.")
    if (fr < 0).any():
        raise ValueError("`frequency` has a negative count.")
    if not (isinstance(n_boot, int) and n_boot >= 0) or not (0.0 < ci < 1.0):
        raise ValueError(f"Expected `n_boot` >= 0 and 0 < `ci` < 1, got {n_boot!r} and {ci!r}.")
    f = np.log1p(fr)
    point = _stats(y, f, s)
    estimates = {k: float(v) for k, v in zip(_NAMES, point)}
    reason = ""
    if y.size < 4:
        reason = f"needs at least 4 items, got {y.size}"
    elif not all(math.isfinite(estimates[k]) for k in _NAMES):
        reason = "a variable is constant across items, or frequency and similarity are collinear"
    intervals: dict[str, tuple[float, float]] = {}
    n_def: dict[str, int] = {}
    if not reason and n_boot > 0:
        idx = bootstrap_indices(y.size, n_boot, seed)
        boot = _stats(y[idx], f[idx], s[idx])
        for j, k in enumerate(_NAMES):
            lo, hi, nd = percentile_interval(boot[:, j], ci)
            intervals[k], n_def[k] = (lo, hi), nd
    else:
        intervals = {k: (math.nan, math.nan) for k in _NAMES}
        n_def = dict.fromkeys(_NAMES, 0)
    fit = frequency_fit(fr, y, min_count=1)
    return Attribution(y.size, similarity_name, estimates, intervals, n_def, ci, n_boot, seed, fit, window,
                       not reason, reason)


def attribution_from_run(
    run: RunReader,
    source: str,
    *,
    similarity: str = "lex_sum",
    start_step: Optional[int] = None,
    end_step: Optional[int] = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> Attribution:
    """:func:`attribute` for a FrequencyProbe source of a run log, over the records from
    ``start_step`` (default the first) to ``end_step`` (default the last): every quantity is the
    difference between the two records. Items whose values are not finite are left out.

    Raises:
        ValueError: an unknown similarity metric, a source without records, or no record in the window.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"Expected `similarity` among {list(SIMILARITIES)}, got {similarity!r}.")
    steps, logp = run.read(f"{source}/logp")
    _, count = run.read(f"{source}/keyword_count")
    _, sim = run.read(f"{source}/{similarity}")
    sel = np.ones(steps.shape, dtype=bool)
    if start_step is not None:
        sel &= steps >= start_step
    if end_step is not None:
        sel &= steps <= end_step
    rows = np.flatnonzero(sel)
    if rows.size == 0:
        raise ValueError(f"{source}: no record between steps {start_step} and {end_step}.")
    a, b = int(rows[0]), int(rows[-1])
    y = logp[b].astype(np.float64) - logp[a].astype(np.float64)
    fr = count[b].astype(np.float64) - count[a].astype(np.float64)
    s = sim[b].astype(np.float64) - sim[a].astype(np.float64)
    ok = np.isfinite(y) & np.isfinite(fr) & np.isfinite(s)
    return attribute(y[ok], fr[ok], s[ok], similarity_name=similarity, n_boot=n_boot, ci=ci, seed=seed,
                     window=(int(steps[a]), int(steps[b])))
