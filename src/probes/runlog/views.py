"""Labelled views of a run: metric columns named by pair, sample or format, a pandas frame, and the
HTML display of a run in notebooks.

``RunReader.read`` returns bare arrays whose columns follow the probe's ``describe()`` order;
these views attach the names (:func:`probes.runlog.labels.element_labels`), so a user writes
``run.read_labelled("keyword/p_first")[1]["sky"]`` or ``run.frame("keyword")["p_first"]["sky"]``.
pandas is optional (``pip install 'probes[frame]'``); nothing else here needs it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from probes.runlog.labels import element_labels

if TYPE_CHECKING:  # pragma: no cover
    from probes.runlog.reader import RunReader

__all__ = ["frame", "read_labelled", "run_html"]


def read_labelled(
    run: RunReader, name: str, *, start: Optional[int] = None, stop: Optional[int] = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Steps and ``{element label: values over the steps}`` of metric ``"source/metric"``.

    A scalar metric has the single label ``""``; labels that repeat (two pairs with one name
    cannot exist, but positional labels of a 2-d metric can) are kept apart by their position.
    """
    source = name.split("/", 1)[0]
    steps, values = run.read(name, start=start, stop=stop)
    labels = element_labels(run.describe(source), values.shape[1:], metric=name.split("/", 1)[1])
    flat = values.reshape(len(steps), -1) if values.ndim > 1 else values.reshape(len(steps), 1)
    return steps, {label: flat[:, j].copy() for j, label in enumerate(labels)}


def frame(run: RunReader, source: str, metrics: Optional[list[str]] = None) -> Any:
    """A pandas ``DataFrame`` of ``source``: one row per step (index ``step``), one column per
    (metric, element), e.g. ``df["p_first"]["sky"]``; a scalar metric is the column
    ``(metric, "")``, which ``df[metric]`` returns directly.

    Raises:
        ImportError: pandas is not installed (the message says how to install it).
        UnknownMetricError: an unknown source or metric.
    """
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - exercised where pandas is missing
        raise ImportError(
            "RunReader.frame needs pandas: pip install 'probes[frame]' (or pandas); read_labelled() needs nothing."
        ) from err
    names = metrics if metrics is not None else [m.split("/", 1)[1] for m in run.metrics(f"{source}/")]
    columns: dict[tuple[str, str], np.ndarray] = {}
    steps: Optional[np.ndarray] = None
    for metric in names:
        s, cols = read_labelled(run, f"{source}/{metric}")
        steps = s if steps is None else steps
        for label, values in cols.items():
            columns[(metric, label)] = values
    index = pd.Index(steps if steps is not None else np.zeros(0, np.int64), name="step")
    out = pd.DataFrame(columns, index=index)
    out.columns = pd.MultiIndex.from_tuples(list(columns), names=["metric", "element"])
    return out


def _rows(run: RunReader) -> list[tuple[str, str, int, str, str]]:
    rows = []
    for source in run.sources():
        steps = run.steps(source)
        metrics = [m.split("/", 1)[1] for m in run.metrics(f"{source}/")]
        span = f"{int(steps[0])}..{int(steps[-1])}" if len(steps) else "-"
        kind = str(run.describe(source).get("type", "?"))
        rows.append((source, kind, len(steps), span, ", ".join(metrics)))
    return rows


def run_html(run: RunReader) -> str:
    """The run as an HTML table (what a notebook shows for a run): status, then one row per source
    with its probe type, records, step range and metrics."""
    e = html.escape
    head = f"<p><b>{e(str(run.path))}</b> status {e(run.status)}, last step {run.last_step()}</p>"
    cells = "".join(
        f"<tr><td>{e(s)}</td><td>{e(k)}</td><td>{n}</td><td>{e(span)}</td><td>{e(m)}</td></tr>"
        for s, k, n, span, m in _rows(run)
    )
    header = "".join(f"<th>{c}</th>" for c in ("source", "type", "records", "steps", "metrics"))
    return f"{head}<table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"
