"""Assertions about training dynamics, for unit tests of a training loop.

Each helper accepts a run directory, an opened run, a probe callback (or a list of them), or a
list of records, and raises ``AssertionError`` with a compact table of the offending steps.

The assertions about one probe type are declared by its probe kind, in its own package
(:mod:`probes.core.kinds`; e.g. ``assert_keyword_learned`` in ``probes.keyword.view``).
:func:`assertion` finds any of them by name, and so does attribute access on this module
(``from probes.testing.assertions import assert_above_chance``), including those of kinds
registered at run time. :func:`assert_logs_close` compares whole logs, whatever their probes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

# the built-in kinds' assertions, importable from here as they always were
from probes.choice.view import assert_above_chance, assert_calibrated
from probes.core import kinds
from probes.formats.view import assert_no_format_collapse
from probes.ifd.view import assert_flagged_at_most, assert_ifd_below
from probes.keyword.view import By, assert_keyword_learned, assert_probability_trend, keyword_probability
from probes.priming.view import assert_no_priming, assert_priming_below
from probes.testing.collect import RecordsLike, collect
from probes.testing.tables import fmt

__all__ = [
    "By",
    "assert_above_chance",
    "assert_calibrated",
    "assert_flagged_at_most",
    "assert_ifd_below",
    "assert_keyword_learned",
    "assert_logs_close",
    "assert_no_format_collapse",
    "assert_no_priming",
    "assert_priming_below",
    "assert_probability_trend",
    "assertion",
    "assertions",
    "keyword_probability",
]


def assertions() -> dict[str, Callable[..., None]]:
    """Every assertion the registered probe kinds declare, by name."""
    return {name: fn for kind in kinds.kinds() for name, fn in kind.assertions.items()}


def assertion(name: str) -> Callable[..., None]:
    """The assertion called ``name`` that a registered probe kind declares.

    Raises:
        LookupError: no kind declares it (the message lists those that exist).
    """
    found = assertions()
    if name not in found:
        raise LookupError(f"No probe kind declares an assertion {name!r}; known: {sorted(found)}.")
    return found[name]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return assertion(name)
    except LookupError:
        raise AttributeError(f"module 'probes.testing.assertions' has no attribute {name!r}") from None


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
