"""Assertions about training dynamics, for unit tests of a training loop.

Each helper accepts a run directory, an opened run, a probe callback (or a list of them), or a
list of records, and raises ``AssertionError`` with a compact table of the offending steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Optional, Union

import numpy as np

from probes.testing.sources import RecordsLike, SourceData, collect, pick_source
from probes.testing.tables import fmt, format_table, sample_rows

__all__ = [
    "assert_keyword_learned",
    "assert_logs_close",
    "assert_no_format_collapse",
    "assert_no_priming",
    "assert_priming_below",
    "assert_probability_trend",
    "keyword_probability",
]

By = Literal["seq", "first"]


def _check_by(by: str) -> None:
    if by not in ("seq", "first"):
        raise ValueError(f"Expected `by` to be 'seq' (chained keyword probability) or 'first', got {by!r}.")


def keyword_probability(
    records: RecordsLike, pair: Union[str, int], *, by: By = "seq", source: Optional[str] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Steps and P(keyword | context) of one pair: chained over its tokens (``by="seq"``) or of
    its first token (``by="first"``)."""
    _check_by(by)
    data = pick_source(collect(records), "KeywordProbe", source)
    i = data.index_of(pair)
    logp = data.metric("logp_seq" if by == "seq" else "logp_first")[:, i].astype(np.float64)
    return data.steps, np.exp(logp)


def _label(by: str) -> str:
    return "P_seq" if by == "seq" else "P_first"


def assert_keyword_learned(
    records: RecordsLike,
    pair: Union[str, int],
    *,
    min_prob: float = 0.5,
    min_gain: Optional[float] = None,
    at_step: Optional[int] = None,
    by: By = "seq",
    source: Optional[str] = None,
) -> None:
    """The keyword of ``pair`` is learned: P(keyword | context) >= ``min_prob`` at ``at_step``
    (default: the last reading), and, if given, at least ``min_gain`` times its first reading.

    Raises:
        AssertionError: naming the pair, step, probability and thresholds, with a table.
        ValueError: unknown pair or source, or a step with no reading.
    """
    if not 0.0 < min_prob <= 1.0:
        raise ValueError(f"Expected `min_prob` in (0, 1], got {min_prob!r}.")
    if min_gain is not None and min_gain <= 0:
        raise ValueError(f"Expected `min_gain` > 0, got {min_gain!r}.")
    steps, p = keyword_probability(records, pair, by=by, source=source)
    if at_step is None:
        k = len(steps) - 1
    else:
        hits = np.nonzero(steps == at_step)[0]
        if not len(hits):
            raise ValueError(f"No reading at step {at_step}; readings exist at steps {steps.tolist()[:20]}.")
        k = int(hits[0])
    problems = []
    if math.isnan(p[k]):
        problems.append(
            f"{_label(by)} is NaN: the model's output was not finite there (the record flags it in `nonfinite`)"
        )
    elif not p[k] >= min_prob:
        problems.append(f"{_label(by)} = {fmt(p[k])} < min_prob {fmt(min_prob)}")
    gain = p[k] / p[0] if p[0] > 0 else math.inf
    if min_gain is not None and not gain >= min_gain:
        problems.append(f"gain {fmt(gain)}x over step {int(steps[0])} < min_gain {fmt(min_gain)}x")
    if problems:
        rows = [(int(steps[j]), p[j], p[j] / p[0] if p[0] > 0 else math.inf) for j in sample_rows(len(steps), k)]
        mark = [r[0] for r in rows].index(int(steps[k]))
        raise AssertionError(
            f"keyword of {pair!r} not learned at step {int(steps[k])}: "
            + "; ".join(problems)
            + "\n"
            + format_table(["step", _label(by), "gain"], rows, mark=mark)
        )


def assert_probability_trend(
    records: RecordsLike,
    pair: Union[str, int],
    direction: Literal["rising", "falling"] = "rising",
    *,
    min_change: float = 0.5,
    tolerance: float = 0.5,
    by: By = "seq",
    source: Optional[str] = None,
) -> None:
    """P(keyword | context) moves in ``direction``: the net change from first to last reading is
    at least ``min_change`` decades (log10 units), and no reading moves back more than
    ``tolerance`` decades from the best value seen so far (noise allowance).

    Raises:
        AssertionError: naming the pair and the step of the net change or the worst setback.
    """
    if direction not in ("rising", "falling"):
        raise ValueError(f"Expected `direction` to be 'rising' or 'falling', got {direction!r}.")
    if min_change < 0 or tolerance < 0:
        raise ValueError(f"Expected non-negative `min_change` and `tolerance`, got {min_change!r}, {tolerance!r}.")
    steps, p = keyword_probability(records, pair, by=by, source=source)
    if len(steps) < 2:
        raise AssertionError(f"trend of {pair!r} needs at least 2 readings, got {len(steps)}.")
    sign = 1.0 if direction == "rising" else -1.0
    x = sign * np.log10(np.maximum(p, 1e-300))  # larger is better in both directions
    setback = np.maximum.accumulate(x) - x
    worst = int(np.argmax(setback))
    net = float(x[-1] - x[0])
    problem = None
    if not np.all(np.isfinite(x)):
        worst = int(np.nonzero(~np.isfinite(x))[0][0])
        problem = f"non-finite probability at step {int(steps[worst])}"
    elif net < min_change:
        worst = len(x) - 1
        problem = (
            f"net change {sign * net:+.3g} decades from step {int(steps[0])} to {int(steps[-1])},"
            f" needs {sign * min_change:+.3g}"
        )
    elif setback[worst] > tolerance:
        problem = f"fell back {setback[worst]:.3g} decades at step {int(steps[worst])} (tolerance {tolerance:.3g})"
    if problem:
        rows = [(int(steps[j]), p[j], sign * (x[j] - x[0])) for j in sample_rows(len(steps), worst)]
        mark = [r[0] for r in rows].index(int(steps[worst]))
        raise AssertionError(
            f"{_label(by)} of {pair!r} is not {direction}: {problem}\n"
            + format_table(["step", _label(by), "log10 change"], rows, mark=mark)
        )


def _select(data: SourceData, elements: Optional[Sequence[Union[str, int]]]) -> list[int]:
    if elements is None:
        width = next(iter(data.metrics.values())).shape[1]
        return list(range(width))
    if isinstance(elements, (str, int)):
        elements = [elements]
    return [data.index_of(e) for e in elements]


def assert_priming_below(
    records: RecordsLike,
    max_value: float,
    *,
    samples: Optional[Sequence[Union[str, int]]] = None,
    metric: str = "s_prime",
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Every reading (with a baseline) of ``metric`` (default the priming score S_prime) stays at
    or below ``max_value`` for the chosen learning samples (default all).

    Raises:
        AssertionError: naming the first sample and step over the limit, with a table.
    """
    data = pick_source(collect(records), "PrimingProbe", source)
    cols = _select(data, samples)
    values = data.metric(metric)[:, cols].astype(np.float64)
    valid = np.ones_like(values, dtype=bool)
    if "has_baseline" in data.metrics:
        valid &= data.metrics["has_baseline"][:, cols].astype(bool)
    if after_step is not None:
        valid &= (data.steps > after_step)[:, None]
    bad = valid & ~(values <= max_value)  # NaN with a baseline counts as a failure
    if bad.any():
        names = data.names()
        r, c = (int(v[0]) for v in np.nonzero(bad))
        col = cols[c]
        name = names[col] if col < len(names) else str(col)
        rows = [(int(data.steps[j]), values[j, c]) for j in sample_rows(len(data.steps), r)]
        mark = [row[0] for row in rows].index(int(data.steps[r]))
        why = (
            "the model's output was not finite there (the record flags it in `nonfinite`)"
            if math.isnan(values[r, c])
            else f"above the limit {fmt(max_value)}"
        )
        raise AssertionError(
            f"{metric} of sample {name!r} is {fmt(values[r, c])} at step {int(data.steps[r])}, {why}\n"
            + format_table(["step", metric], rows, mark=mark)
        )


def assert_no_priming(
    records: RecordsLike,
    samples: Optional[Sequence[Union[str, int]]] = None,
    *,
    max_factor: float = 2.0,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Learning did not prime the samples' keywords into their priming contexts: S_prime (mean
    ratio of P(keyword | prefix) to its baseline) never exceeds ``max_factor``."""
    if max_factor < 1.0:
        raise ValueError(f"Expected `max_factor` >= 1 (1 = no change from baseline), got {max_factor!r}.")
    assert_priming_below(records, max_factor, samples=samples, after_step=after_step, source=source)


def assert_no_format_collapse(
    records: RecordsLike,
    *,
    min_entropy_bits: Optional[float] = None,
    max_dominant_share: Optional[float] = None,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """The format distribution never collapses: its entropy stays >= ``min_entropy_bits`` and/or
    the dominant format's share stays <= ``max_dominant_share`` (default: entropy >= 0.5 bits).

    Raises:
        AssertionError: naming the step, the dominant format, its share and the entropy.
    """
    if min_entropy_bits is None and max_dominant_share is None:
        min_entropy_bits = 0.5
    data = pick_source(collect(records), "FormatProbe", source)
    ent = data.metric("entropy_bits").reshape(len(data.steps)).astype(np.float64)
    share = data.metric("dominant_share").reshape(len(data.steps)).astype(np.float64)
    dom = data.metric("dominant").reshape(len(data.steps)).astype(np.int64)
    bad = np.zeros(len(ent), dtype=bool)
    if min_entropy_bits is not None:
        bad |= ~(ent >= min_entropy_bits)
    if max_dominant_share is not None:
        bad |= ~(share <= max_dominant_share)
    counts = data.metrics.get("n")
    if counts is not None and counts.any():  # rollout counts: an empty batch carries no distribution
        bad &= counts.reshape(len(ent)) > 0
    if after_step is not None:
        bad &= data.steps > after_step
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        names = data.names()
        fname = names[dom[k]] if 0 <= dom[k] < len(names) else str(dom[k])
        limits = []
        if min_entropy_bits is not None:
            limits.append(f"min entropy {fmt(min_entropy_bits)} bits")
        if max_dominant_share is not None:
            limits.append(f"max dominant share {fmt(max_dominant_share)}")
        rows = [
            (int(data.steps[j]), ent[j], names[dom[j]] if 0 <= dom[j] < len(names) else dom[j], share[j])
            for j in sample_rows(len(ent), k)
        ]
        mark = [r[0] for r in rows].index(int(data.steps[k]))
        raise AssertionError(
            f"format distribution collapsed at step {int(data.steps[k])}: {fname!r} holds {fmt(share[k])}"
            f" of outputs, entropy {fmt(ent[k])} bits ({', '.join(limits)})\n"
            + format_table(["step", "entropy_bits", "dominant", "share"], rows, mark=mark)
        )


def assert_logs_close(
    actual: RecordsLike,
    golden: RecordsLike,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    metrics: Optional[Sequence[str]] = None,
) -> None:
    """Golden-log regression: every metric of ``golden`` (optionally only names starting with one
    of ``metrics``, e.g. ``"keyword/logp_seq"``) exists in ``actual`` at the same steps and is
    close elementwise (``|a - g| <= atol + rtol * |g|``, NaN equal to NaN).

    Raises:
        AssertionError: naming the first diverging metric, step and element.
    """
    got, want = collect(actual), collect(golden)
    first: Optional[tuple[int, str, str]] = None  # (step, qualified metric, message)
    for source, w in sorted(want.items()):
        for name in sorted(w.metrics):
            qualified = f"{source}/{name}"
            if metrics is not None and not any(qualified.startswith(m) for m in metrics):
                continue
            if source not in got or name not in got[source].metrics:
                raise AssertionError(f"metric {qualified!r} is in the golden log but missing from the actual one")
            g = got[source]
            if not np.array_equal(g.steps, w.steps):
                missing = sorted(set(w.steps.tolist()) - set(g.steps.tolist()))
                extra = sorted(set(g.steps.tolist()) - set(w.steps.tolist()))
                raise AssertionError(f"{qualified}: steps differ: missing {missing[:10]}, unexpected {extra[:10]}")
            a = g.metrics[name].astype(np.float64)
            e = w.metrics[name].astype(np.float64)
            if a.shape != e.shape:
                raise AssertionError(f"{qualified}: shape {a.shape} != golden {e.shape}")
            close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
            if close.all():
                continue
            idx = np.argwhere(~close)[0]
            step = int(w.steps[idx[0]])
            elem = tuple(int(i) for i in idx[1:])
            names = w.names()
            where = (
                f" element {names[elem[0]]!r}"
                if elem and len(elem) == 1 and elem[0] < len(names)
                else (f" element {elem}" if elem else "")
            )
            av, ev = a[tuple(idx)], e[tuple(idx)]
            msg = (
                f"{qualified} diverges at step {step}{where}: actual {fmt(av)} vs golden {fmt(ev)}"
                f" (|diff| {fmt(abs(av - ev))} > atol {fmt(atol)} + rtol {fmt(rtol)} * |golden|)"
            )
            if first is None or (step, qualified) < first[:2]:
                first = (step, qualified, msg)
    if first is not None:
        raise AssertionError(first[2])
