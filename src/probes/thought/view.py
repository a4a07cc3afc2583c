"""What the shared layers show of a ThoughtGainProbe source: its probe kind (``probes.core.kinds``).

* the record schema over the ``items`` axis (``describe()["items"]``);
* ``probes summary``: per item the first and last gain (nats) and, with an EMA baseline, the last
  EMA gain; the mean gain first and last;
* the dashboard panel: one row per item, highest gain first, with a gain sparkline;
* ``probes plot``: the gain per item over steps, with the line gain = 0;
* ``probes replay``: the mean, lowest and highest gain;
* the assertion ``assert_gain_above`` and the expectation :class:`GainAbove`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from rich.panel import Panel

from probes.console.numbers import fmt_num, printable, sample_rows, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table
from probes.console.sparkline import Sparkline
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

__all__ = ["KIND", "GainAbove", "ThoughtPanel", "ThoughtState", "assert_gain_above"]

TYPE = "ThoughtGainProbe"
_PER_ITEM = ("logp_thought", "logp_plain", "gain", "gain_per_token", "logp_plain_ema", "gain_ema")


def _order(values: Sequence[float]) -> list[int]:
    """Item indices, highest value first; non-finite first of all."""
    return sorted(range(len(values)), key=lambda i: -values[i] if math.isfinite(values[i]) else -math.inf)


def _names(describe: Mapping[str, Any], width: int) -> list[str]:
    names = KIND.labels(describe, "items") or []
    return names if len(names) == width else [str(i) for i in range(width)]


class ThoughtState(ElementState):
    """The latest reading per item and a history of gains."""

    axis = "items"
    element = "item"
    counted_by = "gain"

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.gains = self.history()

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        self.gains.append(step, self.latest.get("gain", []))
        return nonfinite_alerts(self.source, "gain", tensors.get("gain"), self.names, step)


class ThoughtPanel(RowsPanel[ThoughtState]):
    """Gain, both log-probabilities (and the EMA gain) per item, highest gain first."""

    def __rich__(self) -> Panel:
        s = self.state
        gain = s.latest.get("gain", [])
        order = _order(gain)[: self.max_rows]
        ema = "gain_ema" in s.latest
        t = panel_table(caption=f"+{len(gain) - len(order)} more items" if len(gain) > len(order) else None)
        name_column(t, "item", max_width=28)
        for head in ("gain", "log p(x|c,z)", "log p(x|c)", *(("gain vs EMA",) if ema else ())):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for i in order:
            cells = [name_cell(s.names[i]), fmt_num(gain[i]), fmt_num(s.value("logp_thought", i)),
                     fmt_num(s.value("logp_plain", i))]
            if ema:
                cells.append(fmt_num(s.value("gain_ema", i)))
            t.add_row(*cells, Sparkline(s.column(s.gains, i)))
        mean = float(np.nanmean(gain)) if gain else math.nan
        return panel(t, f"{s.source} · information gain of thoughts (mean {fmt_num(mean)} nats)", "magenta")


def _status(s: ThoughtState, options: DashboardOptions) -> str:
    gain = s.latest.get("gain", [])
    mean = float(np.nanmean(gain)) if gain else math.nan
    return f"{s.source}: {len(gain)} thoughts, mean gain {fmt_num(mean)} nats"


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/gain" not in have:
        return {}
    steps, gain = run.read(f"{source}/gain")
    gain = gain.astype(np.float64)
    names = _names(describe, gain.shape[1])
    ema = run.read(f"{source}/gain_ema")[1][-1] if f"{source}/gain_ema" in have else None
    rows = [
        {"item": n, "gain_first": json_number(gain[0, i]), "gain": json_number(gain[-1, i]),
         "gain_ema": json_number(ema[i]) if ema is not None else None}
        for i, n in enumerate(names)
    ]
    return {
        "step": int(steps[-1]),
        "n_items": len(rows),
        "mean_gain_first": json_number(np.nanmean(gain[0])),
        "mean_gain": json_number(np.nanmean(gain[-1])),
        "items": [rows[i] for i in _order(gain[-1].tolist())][:limit],
        "sorted_by": "gain",
    }


def _summary_lines(sec: dict[str, Any]) -> list[str]:
    rows = [[r["item"], r["gain_first"], r["gain"], r["gain_ema"]] for r in sec["items"]]
    return [
        "",
        f"  information gain of {sec['n_items']} thoughts (nats): mean {fmt_num(sec['mean_gain_first'])} at the"
        f" first reading, {fmt_num(sec['mean_gain'])} at step {sec['step']}",
        table(["item", "gain first", "gain", "gain vs EMA"], rows, indent="    "),
    ]


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """The gain per item over steps, the highest final gains first, with the line gain = 0."""
    steps, gain = run.read(f"{source}/gain")
    gain = gain.astype(np.float64)
    names = [printable(n) for n in _names(run.describe(source), gain.shape[1])]
    for j in sorted(_order(gain[-1].tolist())[:max_series]):
        ax.plot(steps, gain[:, j], label=names[j], linewidth=1.2)
    ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("log p(x|c,z) - log p(x|c)  [nats]")
    ax.set_title(f"{printable(source)}: information gain of each thought")
    ax.legend(fontsize="x-small", loc="best")


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "gain" not in t:
        return None
    gain = t["gain"].astype(np.float64).reshape(-1)
    finite = gain[np.isfinite(gain)]
    if not finite.size:
        return "gain nan"
    lo, hi = float(finite.min()), float(finite.max())
    return f"mean gain {fmt_num(float(finite.mean()))}  min {fmt_num(lo)}  max {fmt_num(hi)}"


def assert_gain_above(
    records: RecordsLike,
    min_gain: float = 0.0,
    *,
    items: Optional[Union[str, int, Sequence[Union[str, int]]]] = None,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Every reading (after ``after_step``) of the gain of the chosen items (default all) is above
    ``min_gain`` nats (a NaN gain fails).

    Raises:
        AssertionError: naming the first item and step at or below the limit, with a table.
        ValueError: an unknown item or source.
    """
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    data = pick_source(collect(records), TYPE, source)
    gain = data.metric("gain").astype(np.float64)
    chosen = range(gain.shape[1]) if items is None else [items] if isinstance(items, (str, int)) else items
    cols = [data.index_of(i) for i in chosen]
    values = gain[:, cols]
    bad = ~(values > min_gain)
    if after_step is not None:
        bad &= (data.steps > after_step)[:, None]
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        names = data.names()
        name = names[cols[c]] if cols[c] < len(names) else str(cols[c])
        rows = [(int(data.steps[j]), values[j, c]) for j in sample_rows(len(data.steps), r)]
        mark = [row[0] for row in rows].index(int(data.steps[r]))
        raise AssertionError(
            f"information gain of thought {name!r} is {fmt_num(values[r, c])} nats at step {int(data.steps[r])},"
            f" not above {fmt_num(min_gain)}\n" + table(["step", "gain"], rows, mark=mark)
        )


@dataclass(frozen=True)
class GainAbove(kinds.Expectation):
    """The gain of the chosen thoughts stays above ``min_gain`` nats."""

    min_gain: float = 0.0
    items: Optional[tuple[Union[str, int], ...]] = None
    kind = TYPE

    @property
    def label(self) -> str:
        return f"GainAbove({self.min_gain})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_gain_above(data, self.min_gain, items=self.items)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "thought",
        globals(),
        schema={
            **kinds.metrics(_PER_ITEM, NUMBER, ("items",)),
            **kinds.metrics(("nonfinite",), FLAG, ("items",)),
            **kinds.metrics(("mean_gain",), NUMBER),
        },
        axes={"items": lambda d: d.get("items")},
        state=ThoughtState,
        panel=lambda s, o: ThoughtPanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("gain",),
        assertions={"assert_gain_above": assert_gain_above},
        expectations=(GainAbove,),
    )
)
