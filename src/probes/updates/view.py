"""What the shared layers show of a LayerUpdateProbe source: its probe kind (``probes.core.kinds``).

* the record schema over the ``groups`` axis (``describe()["groups"]``);
* ``probes summary``: per group the mean share of ``||dW||^2`` over the run (with the first and last
  reading), the last relative update and the last drift; the group with the largest mean share;
* the dashboard panel: one row per group (depth order) with share bars, relative update, drift and a
  share sparkline;
* ``probes plot``: the share per group over steps (stacked);
* ``probes replay``: the top group and its share, the update norm;
* the assertion ``assert_share_within`` (a group's share stays within bounds) and the expectation
  :class:`ShareWithin`;
* :func:`compare_shares`: the mean share per group of two runs or two stages side by side;
  :func:`update_stats` and :func:`compare_updates`: what ``probes compare`` prints and draws for
  runs (or stages) that hold LayerUpdateProbe sources: per group the mean share, the mean relative
  update and the last relative drift of each run, and their differences from the first run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from rich.panel import Panel

from probes.console.numbers import fmt_num, printable, sample_rows, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table
from probes.console.sparkline import Sparkline
from probes.console.states import DashboardOptions, ElementState, NewAlert
from probes.core import kinds
from probes.core.kinds import NUMBER
from probes.runlog.summary import json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "ShareWithin",
    "UpdatePanel",
    "UpdateState",
    "assert_share_within",
    "compare_shares",
    "compare_updates",
    "mean_shares",
    "update_stats",
]

TYPE = "LayerUpdateProbe"
_PER_GROUP = ("update_sq", "share", "relative", "param_norm", "drift", "drift_relative")


def mean_shares(share: np.ndarray) -> np.ndarray:
    """Mean over readings of each group's share (NaN readings, e.g. a zero update, left out)."""
    share = np.asarray(share, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(share), share, np.nan), axis=0) if share.size else share


def compare_shares(a: tuple[Sequence[str], np.ndarray], b: tuple[Sequence[str], np.ndarray]) -> list[dict[str, Any]]:
    """Rows ``{group, share_a, share_b, difference}`` of the mean shares of two runs or stages
    (``(groups, share readings)`` each, e.g. ``(run.describe(s)["groups"], run.read(f"{s}/share")[1])``),
    over the union of their groups in the order of ``a`` then ``b``; a group missing on one side has
    share 0 there."""
    ma = dict(zip(a[0], mean_shares(a[1]).tolist()))
    mb = dict(zip(b[0], mean_shares(b[1]).tolist()))
    order = list(a[0]) + [g for g in b[0] if g not in ma]
    return [
        {"group": g, "share_a": sa, "share_b": sb, "difference": sb - sa}
        for g in order
        for sa, sb in [(ma.get(g, 0.0), mb.get(g, 0.0))]
    ]


def update_stats(run: RunReader, source: str) -> dict[str, Any]:
    """What :func:`compare_updates` compares of one LayerUpdateProbe source of a run log:
    ``{"groups", "readings", "step", "share", "relative", "drift_relative"}`` with, per group, the
    mean share of ``||dW||^2`` over the readings (:func:`mean_shares`), the mean relative update
    ``||dW|| / ||W||`` over the readings (NaN readings left out; None when not recorded) and the
    relative drift ``||W - W0|| / ||W0||`` at the last reading (None without ``drift=True``).

    Raises:
        KeyError: the source has no ``share`` records.
    """
    have = set(run.metrics(f"{source}/"))
    if f"{source}/share" not in have:
        raise KeyError(f"Source {source!r} has no share records.")
    steps, share = run.read(f"{source}/share")
    groups = _groups(run, source, run.describe(source), share.shape[1])
    relative = mean_shares(run.read(f"{source}/relative")[1]) if f"{source}/relative" in have else None
    drift = (run.read(f"{source}/drift_relative")[1][-1].astype(np.float64)
             if f"{source}/drift_relative" in have else None)
    return {
        "groups": groups,
        "readings": len(steps),
        "step": int(steps[-1]) if len(steps) else None,
        "share": mean_shares(share),
        "relative": relative,
        "drift_relative": drift,
    }


#: the quantities :func:`compare_updates` compares, with their labels
UPDATE_QUANTITIES = {
    "share": "mean share of ||dW||^2 over the readings",
    "relative": "mean ||dW||/||W|| over the readings",
    "drift_relative": "||W - W0||/||W0|| at the last reading",
}


def compare_updates(stats: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per layer group (the union of the runs' groups, in the order of the first run, then
    the others) of the :func:`update_stats` of several runs: ``{"group", "share": {run: value},
    "share_difference": {run: value - first run's}, "relative": ..., "relative_difference": ...,
    "drift_relative": ..., "drift_relative_difference": ...}``.

    A group missing from a run has share 0 there (its parameters took no part of that run's update,
    as in :func:`compare_shares`) and no relative update or drift (None); a quantity a run did not
    record is None, and so is a difference with a None side.
    """
    runs = list(stats)
    order: list[str] = []
    for st in stats.values():
        order += [g for g in st["groups"] if g not in order]
    rows = []
    for g in order:
        row: dict[str, Any] = {"group": g}
        for q in UPDATE_QUANTITIES:
            values: dict[str, Optional[float]] = {}
            for run, st in stats.items():
                arr = st[q]
                if g in st["groups"] and arr is not None:
                    values[run] = float(arr[list(st["groups"]).index(g)])
                else:
                    values[run] = 0.0 if q == "share" and arr is not None else None
            first = values[runs[0]]
            row[q] = values
            row[f"{q}_difference"] = {
                run: (None if v is None or first is None else v - first) for run, v in values.items()
            }
        rows.append(row)
    return rows


# --- dashboard ----------------------------------------------------------------------------------


class UpdateState(ElementState):
    """The latest update figures per group and a history of shares."""

    axis = "groups"
    element = "group"
    counted_by = "share"

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.shares = self.history()

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        self.shares.append(step, self.latest.get("share", []))
        return []

    def top(self) -> tuple[str, float]:
        share = self.latest.get("share", [])
        finite = [(v, i) for i, v in enumerate(share) if math.isfinite(v)]
        if not finite:
            return "-", math.nan
        v, i = max(finite)
        return self.names[i], v


class UpdatePanel(RowsPanel[UpdateState]):
    """Share of ||dW||^2, relative update and drift per group, in depth order."""

    def __rich__(self) -> Panel:
        s = self.state
        n = len(s.latest.get("share", []))
        rows = list(range(n))[: self.max_rows]
        t = panel_table(caption=f"+{n - len(rows)} more groups" if n > len(rows) else None)
        name_column(t, "group", max_width=20)
        for head in ("share", "|dW|/|W|", "drift rel"):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("share trend", no_wrap=True, ratio=1, min_width=4)
        for i in rows:
            t.add_row(
                name_cell(s.names[i]),
                f"{100 * s.value('share', i):.1f}%",
                fmt_num(s.value("relative", i)),
                fmt_num(s.value("drift_relative", i)),
                Sparkline(s.column(s.shares, i)),
            )
        name, share = s.top()
        return panel(t, f"{s.source} · update share by layer (top {name} {100 * share:.0f}%)", "blue")


def _status(s: UpdateState, options: DashboardOptions) -> str:
    name, share = s.top()
    norm = s.latest.get("update_norm", [math.nan])
    return f"{s.source}: top group {name} {fmt_num(share)} of ||dW||^2, ||dW|| {fmt_num(norm[0] if norm else math.nan)}"


# --- probes summary -----------------------------------------------------------------------------


def _groups(run: RunReader, source: str, describe: Mapping[str, Any], width: int) -> list[str]:
    names = KIND.labels(describe, "groups") or []
    return names if len(names) == width else [str(i) for i in range(width)]


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/share" not in have:
        return {}
    steps, share = run.read(f"{source}/share")
    share = share.astype(np.float64)
    names = _groups(run, source, describe, share.shape[1])
    last = {m: run.read(f"{source}/{m}")[1][-1] for m in _PER_GROUP if f"{source}/{m}" in have}
    mean = mean_shares(share)
    rows = [
        {
            "group": g,
            "mean_share": json_number(mean[i]),
            "share_first": json_number(share[0, i]),
            "share": json_number(share[-1, i]),
            "relative": json_number(last["relative"][i]) if "relative" in last else None,
            "drift_relative": json_number(last["drift_relative"][i]) if "drift_relative" in last else None,
        }
        for i, g in enumerate(names)
    ]
    top = int(np.nanargmax(mean)) if np.isfinite(mean).any() else 0
    return {
        "step": int(steps[-1]),
        "readings": len(steps),
        "top_group": names[top] if names else None,
        "groups": rows[:limit],
    }


def _summary_lines(sec: dict[str, Any]) -> list[str]:
    rows = [[r["group"], r["mean_share"], r["share_first"], r["share"], r["relative"], r["drift_relative"]]
            for r in sec["groups"]]
    return [
        "",
        f"  update share by layer group over {sec['readings']} readings (last step {sec['step']});"
        f" largest mean share: {printable(sec['top_group'])}",
        table(["group", "mean share", "first", "last", "|dW|/|W| last", "drift rel last"], rows, indent="    "),
    ]


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """The share of ||dW||^2 per group over steps, stacked in depth order."""
    steps, share = run.read(f"{source}/share")
    share = np.nan_to_num(share.astype(np.float64))
    names = [printable(n) for n in _groups(run, source, run.describe(source), share.shape[1])]
    ax.stackplot(steps, share.T[:max_series], labels=names[:max_series])
    ax.set_ylim(0, 1)
    ax.set_xlabel("step (update)")
    ax.set_ylabel("share of ||dW||^2")
    ax.set_title(f"{printable(source)}: where the updates land")
    ax.legend(fontsize="x-small", loc="best")


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "share" not in t:
        return None
    share = t["share"].astype(np.float64).reshape(-1)
    names = KIND.labels(describe, "groups") or []
    i = int(np.nanargmax(share)) if np.isfinite(share).any() else 0
    name = names[i] if i < len(names) else str(i)
    norm = float(t["update_norm"]) if "update_norm" in t else math.nan
    return f"top {printable(name)} {fmt_num(share[i])} of ||dW||^2  ||dW|| {fmt_num(norm)}"


# --- probes.testing -----------------------------------------------------------------------------


def assert_share_within(
    records: RecordsLike,
    group: str,
    low: float = 0.0,
    high: float = 1.0,
    *,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """At every reading (after ``after_step``) the share of ``||dW||^2`` of layer group ``group`` lies
    in ``[low, high]`` (a NaN share fails).

    Raises:
        AssertionError: naming the first step out of bounds, with a table.
        ValueError: an unknown group or source, or bad bounds.
    """
    if not (0.0 <= low <= high <= 1.0):
        raise ValueError(f"Expected 0 <= low <= high <= 1, got low={low!r}, high={high!r}.")
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    data = pick_source(collect(records), TYPE, source)
    col = data.index_of(group)
    share = data.metric("share").astype(np.float64)[:, col]
    bad = ~((share >= low) & (share <= high))
    if after_step is not None:
        bad &= data.steps > after_step
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        rows = [(int(data.steps[j]), share[j]) for j in sample_rows(len(data.steps), k)]
        mark = [r[0] for r in rows].index(int(data.steps[k]))
        raise AssertionError(
            f"share of ||dW||^2 in group {group!r} is {fmt_num(share[k])} at step {int(data.steps[k])}, outside"
            f" [{fmt_num(low)}, {fmt_num(high)}]\n" + table(["step", "share"], rows, mark=mark)
        )


@dataclass(frozen=True)
class ShareWithin(kinds.Expectation):
    """The share of ``||dW||^2`` of ``group`` stays within ``[low, high]``."""

    group: str
    low: float = 0.0
    high: float = 1.0
    kind = TYPE

    @property
    def label(self) -> str:
        return f"ShareWithin({self.group!r}, {self.low}, {self.high})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_share_within(data, self.group, self.low, self.high)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "updates",
        globals(),
        schema={
            **kinds.metrics(_PER_GROUP, NUMBER, ("groups",)),
            **kinds.metrics(("update_norm", "drift_norm"), NUMBER),
        },
        axes={"groups": lambda d: d.get("groups")},
        state=UpdateState,
        panel=lambda s, o: UpdatePanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("share",),
        assertions={"assert_share_within": assert_share_within},
        expectations=(ShareWithin,),
    )
)
