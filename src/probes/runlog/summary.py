"""``summarize(run)``: final and extreme values, collapse events and surprising samples of a run.

Pure numpy over a :class:`~probes.runlog.RunReader`; returns plain JSON-serialisable data (NaN
becomes None) that the ``probes summary`` command prints as text or JSON.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from probes.runlog.labels import element_labels, format_names, kind_of, pair_groups, pair_names, sample_names
from probes.runlog.reader import RunReader

__all__ = ["collapse_events", "summarize"]


def _num(x: Any) -> Any:
    """A JSON-safe Python scalar: NaN and infinities become None."""
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> Optional[int]:
    """An int for a stored integer-like value; None for NaN, infinities and non-numbers."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(x) if isinstance(x, (int, np.integer)) else int(f)


def _float_or(x: Any, default: float) -> float:
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
    return {"value": _num(flat[row, col]), "step": int(steps[row]), "element": labels[col]}


def metric_summary(name: str, steps: np.ndarray, values: np.ndarray, describe: dict[str, Any]) -> dict[str, Any]:
    """First, final, mean-of-final, min and max (with step and element) of one metric."""
    shape = list(values.shape[1:])
    labels = element_labels(describe, shape)
    out: dict[str, Any] = {"name": name, "dtype": str(values.dtype), "shape": shape, "records": len(steps)}
    if len(steps) == 0:
        return out
    last = values[-1]
    if values.dtype == np.bool_:
        out["final"] = bool(last) if last.ndim == 0 else int(last.sum())
        out["final_is_count"] = last.ndim > 0
        return out
    out["first"] = _num(values[0]) if values[0].ndim == 0 else None
    out["final"] = _num(last) if last.ndim == 0 else None
    finite_last = last[np.isfinite(last)] if last.dtype.kind == "f" else last
    out["final_mean"] = _num(finite_last.mean()) if finite_last.size else None
    out["min"] = _extreme(steps, values, labels, "min")
    out["max"] = _extreme(steps, values, labels, "max")
    out["nan"] = int(np.isnan(values).sum()) if values.dtype.kind == "f" else 0
    return out


def collapse_events(steps: np.ndarray, collapsed: np.ndarray) -> list[tuple[int, str]]:
    """``(step, "collapsed" | "recovered")`` wherever the detector's state changes (a run that
    starts collapsed reports its first step)."""
    state = np.asarray(collapsed, dtype=bool).reshape(len(steps))
    events: list[tuple[int, str]] = []
    prev = False
    for s, c in zip(steps.tolist(), state.tolist()):
        if c != prev:
            events.append((int(s), "collapsed" if c else "recovered"))
            prev = c
    return events


def _keyword_section(run: RunReader, source: str, describe: dict[str, Any], limit: int) -> dict[str, Any]:
    if f"{source}/p_first" not in run.metrics(f"{source}/"):
        return {}
    steps, p = run.read(f"{source}/p_first")
    names = pair_names(describe) or [str(i) for i in range(p.shape[1])]
    groups = pair_groups(describe) or [""] * len(names)
    if len(names) != p.shape[1]:
        names, groups = [str(i) for i in range(p.shape[1])], [""] * p.shape[1]
    rank = run.read(f"{source}/rank")[1] if f"{source}/rank" in run.metrics(f"{source}/") else None
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log10(p[-1].astype(np.float64)) - np.log10(p[0].astype(np.float64))
    rows = []
    for j, name in enumerate(names):
        col = p[:, j].astype(np.float64)
        rows.append(
            {
                "pair": name,
                "group": groups[j],
                "p_first_initial": _num(col[0]),
                "p_first_final": _num(col[-1]),
                "delta_log10": _num(delta[j]),
                "p_first_min": _num(np.nanmin(col)) if np.isfinite(col).any() else None,
                "min_step": int(steps[np.nanargmin(col)]) if np.isfinite(col).any() else None,
                "p_first_max": _num(np.nanmax(col)) if np.isfinite(col).any() else None,
                "max_step": int(steps[np.nanargmax(col)]) if np.isfinite(col).any() else None,
                "rank_final": _int(rank[-1, j]) if rank is not None else None,
            }
        )
    order = sorted(range(len(rows)), key=lambda j: -abs(rows[j]["delta_log10"] or 0.0))
    return {"pairs": [rows[j] for j in order[:limit]], "n_pairs": len(rows), "sorted_by": "|delta_log10|"}


def _priming_section(run: RunReader, source: str, describe: dict[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/p_before" not in have:
        return {}
    steps, p_before = run.read(f"{source}/p_before")
    last = {k.split("/", 1)[1]: run.read(k)[1][-1] for k in have}
    n = p_before.shape[1]
    names = sample_names(describe) or [str(i) for i in range(n)]
    if len(names) != n:
        names = [str(i) for i in range(n)]
    threshold = _float_or(describe.get("threshold"), 1e-3)
    if "surprising" in last:
        surprising = np.asarray(last["surprising"], dtype=bool)
    else:
        surprising = np.nan_to_num(np.asarray(last["p_before"], dtype=np.float64), nan=np.inf) < threshold
    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "sample": name,
                "p_before": _num(last["p_before"][i]),
                "s_prime": _num(last["s_prime"][i]) if "s_prime" in last else None,
                "log10_s_prime": _num(last["log10_s_prime"][i]) if "log10_s_prime" in last else None,
                "s_mem": _num(last["s_mem"][i]) if "s_mem" in last else None,
                "exposures": _int(last["exposures"][i]) if "exposures" in last else None,
                "surprising": bool(surprising[i]),
            }
        )
    return {
        "threshold": threshold,
        "step": int(steps[-1]),
        "samples": rows[:limit],
        "n_samples": n,
        "surprising": [r["sample"] for r in rows if r["surprising"]],
    }


def _format_section(run: RunReader, source: str, describe: dict[str, Any]) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    out: dict[str, Any] = {}
    steps = run.steps(source)
    wanted = ("dominant", "dominant_share", "entropy_bits")
    series = {m: run.read(f"{source}/{m}")[1] for m in wanted if f"{source}/{m}" in have}
    if f"{source}/dist" in have:
        dist = run.read(f"{source}/dist")[1]
        names = format_names(describe) or [str(i) for i in range(dist.shape[1])]
        if len(names) != dist.shape[1]:
            names = [str(i) for i in range(dist.shape[1])]
        out["final_distribution"] = {n: _num(v) for n, v in zip(names, dist[-1])}
        if "dominant" not in series and dist.shape[1]:
            series["dominant"] = np.argmax(np.nan_to_num(dist.astype(np.float64), nan=-np.inf), axis=1)
    else:
        names = format_names(describe) or []

    def name_of(value: Any) -> str:
        i = _int(value)
        if i is None:
            return "-"
        return names[i] if 0 <= i < len(names) else str(i)

    if "dominant" in series:
        out["final_dominant"] = name_of(series["dominant"][-1])
    if "entropy_bits" in series:
        out["final_entropy_bits"] = _num(series["entropy_bits"][-1])
    if f"{source}/collapsed" in have:
        events = []
        collapsed = run.read(f"{source}/collapsed")[1]
        where = {int(s): k for k, s in enumerate(steps)}
        for step, what in collapse_events(steps, collapsed):
            k = where[step]
            events.append(
                {
                    "step": step,
                    "event": what,
                    "dominant": name_of(series["dominant"][k]) if "dominant" in series else None,
                    "dominant_share": _num(series["dominant_share"][k]) if "dominant_share" in series else None,
                    "entropy_bits": _num(series["entropy_bits"][k]) if "entropy_bits" in series else None,
                }
            )
        out["collapse_events"] = events
    return out


def summarize(run: RunReader, *, limit: int = 20) -> dict[str, Any]:
    """Everything ``probes summary`` shows, as JSON-serialisable data.

    Args:
        run: an open run.
        limit: most rows per per-element table (pairs, samples).

    Returns:
        ``{"run": info, "timelines": [...], "sources": [per source: type, records, step range,
        per-metric first/final/min/max, and a ``keyword`` / ``priming`` / ``format`` section]}``.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"Expected `limit` to be a positive int, got {limit!r}.")
    info = run.info
    sources = []
    for source in run.sources():
        describe = run.describe(source)
        kind = kind_of(describe)
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
        if kind == "keyword":
            entry["keyword"] = _keyword_section(run, source, describe, limit)
        elif kind == "priming":
            entry["priming"] = _priming_section(run, source, describe, limit)
        elif kind == "format":
            entry["format"] = _format_section(run, source, describe)
        sources.append(entry)
    return {"run": info, "timelines": run.timelines, "sources": sources}
