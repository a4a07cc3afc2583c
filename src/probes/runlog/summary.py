"""``summarize(run)``: per source the first, final and extreme values of every metric, plus the
section its probe kind declares (keyword pairs, surprising samples, collapse events, benchmarks...).

Pure numpy over a :class:`~probes.runlog.RunReader`; returns plain JSON-serialisable data (NaN
becomes None) that the ``probes summary`` command prints as text or JSON. The per-source sections
come from the probe-kind registry (:mod:`probes.core.kinds`); nothing here names a probe type.
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from probes.core import kinds
from probes.runlog.labels import element_labels
from probes.runlog.reader import RunReader

if TYPE_CHECKING:
    from probes.formats.view import collapse_events

__all__ = ["collapse_events", "finite_or", "json_int", "json_number", "metric_summary", "summarize"]


def json_number(x: Any) -> Any:
    """A JSON-safe Python scalar: NaN and infinities become None."""
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def json_int(x: Any) -> Optional[int]:
    """An int for a stored integer-like value; None for NaN, infinities and non-numbers."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(x) if isinstance(x, (int, np.integer)) else int(f)


def finite_or(x: Any, default: float) -> float:
    """A finite float from a describe() field, else ``default``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return default
    f = float(x)
    return f if math.isfinite(f) else default


def _extreme(steps: np.ndarray, values: np.ndarray, labels: list[str], which: str) -> Optional[dict[str, Any]]:
    flat = values.reshape(len(values), -1).astype(np.float64)
    finite = np.isfinite(flat)
    if not finite.any():
        return None
    masked = np.where(finite, flat, np.inf if which == "min" else -np.inf)
    pos = int(np.argmin(masked) if which == "min" else np.argmax(masked))
    row, col = divmod(pos, flat.shape[1])
    return {"value": json_number(flat[row, col]), "step": int(steps[row]), "element": labels[col]}


def metric_summary(name: str, steps: np.ndarray, values: np.ndarray, describe: dict[str, Any]) -> dict[str, Any]:
    """First, final, mean-of-final, min and max (with step and element) of one metric."""
    shape = list(values.shape[1:])
    labels = element_labels(describe, shape, metric=name)
    out: dict[str, Any] = {"name": name, "dtype": str(values.dtype), "shape": shape, "records": len(steps)}
    if len(steps) == 0:
        return out
    last = values[-1]
    if values.dtype == np.bool_:
        out["final"] = bool(last) if last.ndim == 0 else int(last.sum())
        out["final_is_count"] = last.ndim > 0
        return out
    out["first"] = json_number(values[0]) if values[0].ndim == 0 else None
    out["final"] = json_number(last) if last.ndim == 0 else None
    finite_last = last[np.isfinite(last)] if last.dtype.kind == "f" else last
    out["final_mean"] = json_number(finite_last.mean()) if finite_last.size else None
    out["min"] = _extreme(steps, values, labels, "min")
    out["max"] = _extreme(steps, values, labels, "max")
    out["nan"] = int(np.isnan(values).sum()) if values.dtype.kind == "f" else 0
    return out


def summarize(run: RunReader, *, limit: int = 20) -> dict[str, Any]:
    """Everything ``probes summary`` shows, as JSON-serialisable data.

    Args:
        run: an open run.
        limit: most rows per per-element table (pairs, samples, questions).

    Returns:
        ``{"run": info, "timelines": [...], "sources": [per source: type, records, step range,
        per-metric first/final/min/max, and under the kind's key (``keyword``, ``priming``,
        ``format``, ``benchmark``, ``ifd``...) the section its probe kind declares]}``.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"Expected `limit` to be a positive int, got {limit!r}.")
    info = run.info
    sources = []
    for source in run.sources():
        describe = run.describe(source)
        kind = kinds.of(describe)
        steps = run.steps(source)
        entry: dict[str, Any] = {
            "source": source,
            "type": describe.get("type", "unknown"),
            "records": len(steps),
            "first_step": int(steps[0]),
            "last_step": int(steps[-1]),
            "metrics": [],
        }
        for name in run.metrics(f"{source}/"):
            st, values = run.read(name)
            entry["metrics"].append(metric_summary(name.split("/", 1)[1], st, values, describe))
        if kind.summarize is not None:
            entry[kind.key] = kind.summarize(run, source, describe, limit)
        sources.append(entry)
    return {"run": info, "timelines": run.timelines, "sources": sources}


def __getattr__(name: str) -> Any:
    # `collapse_events` moved to the format kind (probes.formats.view); kept importable from here
    if name == "collapse_events":
        return importlib.import_module("probes.formats.view").collapse_events
    raise AttributeError(f"module 'probes.runlog.summary' has no attribute {name!r}")
