"""What the shared layers show of a FrequencyProbe source: its probe kind (``probes.core.kinds``).

Record schema and item labels; the ``probes summary`` section (the items ranked by their gain, with
frequency and similarity, and the attribution of :mod:`probes.frequency.analysis`); the dashboard
panel (per item: keyword count, accumulated similarity, the latest step's highest similarity and
the gain, ranked by gain); the ``probes plot`` panel (gain against log(1 + keyword count), coloured
by accumulated lexical similarity, the attribution in the title); the ``probes replay`` line; the
assertion ``assert_seen_at_least`` and the expectation :class:`SeenAtLeast`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from rich.panel import Panel

from probes.console.numbers import MISSING, fmt_num, printable, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table
from probes.console.states import (
    DashboardOptions,
    ElementState,
    NewAlert,
    nonfinite_alerts,
)
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER
from probes.runlog.summary import json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = ["KIND", "FrequencyPanel", "FrequencyState", "SeenAtLeast", "assert_seen_at_least", "item_names"]

TYPE = "FrequencyProbe"
_PER_ITEM = (
    "keyword_count", "ngram_count", "lex_sum", "lex_above", "jaccard_sum", "rep_sum", "rep_above", "lex_max",
    "lex_mean", "jaccard_max", "jaccard_mean", "rep_max", "rep_mean", "logp", "delta_logp",
)


def item_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Item names of a FrequencyProbe, in metric order."""
    return KIND.labels(describe, "items")


def _ranked(gain: Sequence[float]) -> list[int]:
    """Item indices by gain (delta logp), largest first; a non-finite gain ranks before all others
    (as in the keyword views' ranking rule); ties keep item order."""
    return sorted(range(len(gain)), key=lambda i: -gain[i] if math.isfinite(gain[i]) else -math.inf)


# --- dashboard ----------------------------------------------------------------------------------


class FrequencyState(ElementState):
    """The latest reading of every item."""

    axis = "items"
    element = "item"
    counted_by = "logp"

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        logp = tensors.get("logp")
        return nonfinite_alerts(self.source, "logp", logp, self.names, step)


class FrequencyPanel(RowsPanel[FrequencyState]):
    """Per item, ranked by gain: keyword count, context n-gram count, accumulated lexical and
    representational similarity, the latest step's highest lexical similarity, delta logp."""

    def __rich__(self) -> Panel:
        s = self.state
        order = _ranked(s.latest.get("delta_logp", [math.nan] * len(s.names)))
        shown = order[: self.max_rows]
        t = panel_table(caption=f"+{len(order) - len(shown)} more items" if len(order) > len(shown) else None)
        name_column(t, "item", max_width=28)
        for head in ("keyword #", "ngram #", "lex sum", "rep sum", "lex max", "Δ logp"):
            t.add_column(head, justify="right", no_wrap=True)
        for i in shown:
            def cell(metric: str, i: int = i) -> str:
                v = s.value(metric, i)
                return fmt_num(v) if math.isfinite(v) else MISSING

            t.add_row(name_cell(s.names[i]), cell("keyword_count"), cell("ngram_count"), cell("lex_sum"),
                      cell("rep_sum"), cell("lex_max"), cell("delta_logp"))
        return panel(t, f"{s.source} · frequency and similarity, by gain", "cyan")


def _status(s: FrequencyState, options: DashboardOptions) -> str:
    counts = [v for v in s.latest.get("keyword_count", []) if math.isfinite(v)]
    gains = [v for v in s.latest.get("delta_logp", []) if math.isfinite(v)]
    mean_gain = sum(gains) / len(gains) if gains else math.nan
    return (f"{s.source}: {len(s.names)} items, keyword count max {fmt_num(max(counts) if counts else math.nan)},"
            f" mean Δlogp {fmt_num(mean_gain)}")


# --- probes summary -----------------------------------------------------------------------------


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    from probes.frequency.analysis import attribution_from_run

    have = {k.split("/", 1)[1] for k in run.metrics(f"{source}/")}
    if not {"logp", "keyword_count", "lex_sum"} <= have:
        return {}
    steps, logp = run.read(f"{source}/logp")
    last = {m: run.read(f"{source}/{m}")[1][-1] for m in _PER_ITEM if m in have}
    n = logp.shape[1]
    names = item_names(describe) or [str(i) for i in range(n)]
    if len(names) != n:
        names = [str(i) for i in range(n)]
    gain = [float(v) for v in last.get("delta_logp", logp[-1] - logp[0])]
    rows = [
        {"item": names[i], **{m: json_number(last[m][i]) for m in
                              ("keyword_count", "ngram_count", "lex_sum", "rep_sum", "delta_logp") if m in last}}
        for i in _ranked(gain)
    ]
    attributions = {}
    for sim in ("lex_sum", "rep_sum"):
        if sim in have and np.isfinite(run.read(f"{source}/{sim}")[1][-1]).any():
            attributions[sim] = attribution_from_run(run, source, similarity=sim, n_boot=1000).to_json()
    return {"step": int(steps[-1]), "n_items": n, "items": rows[:limit], "attribution": attributions}


def _summary_lines(sec: dict[str, Any]) -> list[str]:
    heads = ["item", "keyword_count", "ngram_count", "lex_sum", "rep_sum", "delta_logp"]
    rows = [[r.get(h) for h in heads] for r in sec["items"]]
    out = ["", f"  items by gain (delta logp) at step {sec['step']}, {sec['n_items']} items:",
           table(heads, rows, indent="    ")]
    for sim, a in sec.get("attribution", {}).items():
        w = a["window"]
        if not a["defined"]:
            out.append(f"  attribution ({sim}, steps {w[0]}..{w[1]}): undefined: {a['reason']}")
            continue
        est, iv = a["estimates"], a["intervals"]
        arows = [[k, est[k], iv[k][0], iv[k][1]] for k in
                 ("beta_frequency", "beta_similarity", "partial_frequency", "partial_similarity")]
        fit = a["log_linear_fit"]
        out.append(f"  attribution of delta logp to log(1+keyword count) and {sim}, steps {w[0]}..{w[1]},"
                   f" {a['n']} items, {a['ci']:.0%} bootstrap intervals: explains: {a['explains']}")
        out.append(table(["quantity", "estimate", "low", "high"], arows, indent="    "))
        out.append(f"    log-linear fit: slope {fmt_num(fit['slope_per_decade'])} per decade of keyword count,"
                   f" r {fmt_num(fit['r'])}, n {fit['n']}" if fit["defined"] else
                   f"    log-linear fit undefined: {fit['reason']}")
    return out


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """Delta logp against log(1 + keyword count) at the last record, coloured by lex_sum."""
    from probes.frequency.analysis import attribution_from_run

    steps, gain = run.read(f"{source}/delta_logp")
    count = run.read(f"{source}/keyword_count")[1][-1].astype(np.float64)
    lex = run.read(f"{source}/lex_sum")[1][-1].astype(np.float64)
    y = gain[-1].astype(np.float64)
    ok = np.isfinite(y) & np.isfinite(count) & np.isfinite(lex)
    points = ax.scatter(np.log1p(count[ok]), y[ok], c=lex[ok], cmap="viridis", zorder=3)
    ax.figure.colorbar(points, ax=ax, label="accumulated lexical similarity (lex_sum)")
    names = item_names(run.describe(source)) or []
    if len(names) == len(y) and len(names) <= 20:
        for i in np.flatnonzero(ok):
            ax.annotate(printable(names[i]), (math.log1p(count[i]), y[i]), fontsize="xx-small",
                        xytext=(3, 3), textcoords="offset points")
    a = attribution_from_run(run, source, similarity="lex_sum", n_boot=500)
    detail = (f"beta freq {a.estimates['beta_frequency']:+.2f}, beta sim {a.estimates['beta_similarity']:+.2f}"
              if a.defined else a.reason)
    ax.set_xlabel("log(1 + keyword count)")
    ax.set_ylabel("delta logp (nats)")
    ax.set_title(f"{printable(source)}: gain vs frequency, step {int(steps[-1])} ({detail})", fontsize="small")
    ax.grid(True, alpha=0.3)


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "keyword_count" not in t:
        return None
    parts = [f"keyword count max {fmt_num(float(np.max(t['keyword_count'])) if t['keyword_count'].size else None)}"]
    for m in ("lex_max", "delta_logp"):
        if m in t:
            v = t[m][np.isfinite(t[m])]
            parts.append(f"mean {m} {fmt_num(float(v.mean()) if v.size else math.nan)}")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


def assert_seen_at_least(
    records: RecordsLike,
    min_value: float,
    *,
    items: Optional[Sequence[Union[str, int]]] = None,
    metric: str = "keyword_count",
    source: Optional[str] = None,
) -> None:
    """At the last reading, ``metric`` (default the cumulative keyword count; ``lex_sum``,
    ``rep_sum``... work too) is at least ``min_value`` for the chosen items (default all).

    Raises:
        AssertionError: naming the first item below, with its value.
    """
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    data = pick_source(collect(records), TYPE, source)
    values = data.metric(metric)[-1].astype(np.float64)
    cols = range(values.size) if items is None else [data.index_of(e) for e in (
        [items] if isinstance(items, (str, int)) else items)]
    names = data.names()
    for c in cols:
        if not values[c] >= min_value:
            name = names[c] if c < len(names) else str(c)
            raise AssertionError(
                f"{metric} of item {name!r} is {fmt_num(values[c])} at step {int(data.steps[-1])}, below"
                f" {fmt_num(min_value)}"
            )


@dataclass(frozen=True)
class SeenAtLeast(kinds.Expectation):
    """``metric`` of the chosen items reaches ``min_value`` by step ``by_step``."""

    min_value: float
    by_step: int = 0
    items: Optional[tuple[Union[str, int], ...]] = None
    metric: str = "keyword_count"
    kind = TYPE

    @property
    def label(self) -> str:
        return f"SeenAtLeast({self.metric} >= {self.min_value} by step {self.by_step})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_seen_at_least(data, self.min_value, items=self.items, metric=self.metric)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "frequency",
        globals(),
        schema={
            **kinds.metrics(_PER_ITEM, NUMBER, ("items",)),
            "samples_seen": kinds.Metric(NUMBER, ()),
            "nonfinite": kinds.Metric(FLAG, ("items",)),
        },
        axes={"items": lambda d: d.get("items")},
        state=FrequencyState,
        panel=lambda s, o: FrequencyPanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("delta_logp", "keyword_count", "lex_sum"),
        assertions={"assert_seen_at_least": assert_seen_at_least},
        expectations=(SeenAtLeast,),
    )
)
