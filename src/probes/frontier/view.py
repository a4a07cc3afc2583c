"""What the shared layers show of a RefinementProbe source: its probe kind (``probes.core.kinds``).

* the record schema over the ``samples`` axis (``describe()["samples"]``);
* ``probes summary``: the accepted fraction first and last, and per sample both IFDs and r-IFDs,
  their differences and the decision at the last reading;
* the dashboard panel: one row per sample with IFD and r-IFD of both versions and the decision;
* ``probes plot``: the accepted fraction over steps and the mean r-IFD difference;
* ``probes replay``: accepted count, median d_r_ifd;
* the assertion ``assert_accepted_at_least`` and the expectation :class:`AcceptedAtLeast`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from rich.panel import Panel
from rich.text import Text

from probes.console.numbers import fmt_num, printable, sample_rows, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table
from probes.console.states import (
    DashboardOptions,
    ElementState,
    NewAlert,
    nonfinite_alerts,
)
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER, Metric
from probes.runlog.summary import json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = ["KIND", "AcceptedAtLeast", "FrontierPanel", "FrontierState", "assert_accepted_at_least"]

TYPE = "RefinementProbe"
_PER_SAMPLE = ("ifd_original", "ifd_refined", "r_ifd_original", "r_ifd_refined", "d_ifd", "d_r_ifd")


def _names(describe: Mapping[str, Any], width: int) -> list[str]:
    names = KIND.labels(describe, "samples") or []
    return names if len(names) == width else [str(i) for i in range(width)]


class FrontierState(ElementState):
    """The latest reading per sample and a history of the accepted fraction."""

    axis = "samples"
    element = "sample"
    counted_by = "accepted"

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.fraction = self.history()

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        self.fraction.append(step, self.latest.get("accepted_fraction", [math.nan]))
        return nonfinite_alerts(self.source, "r_ifd_refined", tensors.get("r_ifd_refined"), self.names, step)

    def accepted(self) -> tuple[int, int]:
        flags = self.latest.get("accepted", [])
        return sum(1 for f in flags if f == 1.0), len(flags)


class FrontierPanel(RowsPanel[FrontierState]):
    """IFD and r-IFD of both responses and the decision per sample."""

    def __rich__(self) -> Panel:
        s = self.state
        n = len(s.latest.get("accepted", []))
        rows = list(range(n))[: self.max_rows]
        t = panel_table(caption=f"+{n - len(rows)} more samples" if n > len(rows) else None)
        name_column(t, "sample", max_width=28)
        for head in ("IFD orig", "IFD ref", "r-IFD orig", "r-IFD ref"):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("accept", no_wrap=True)
        for i in rows:
            ok = s.value("accepted", i) == 1.0
            t.add_row(name_cell(s.names[i]), *(fmt_num(s.value(m, i)) for m in _PER_SAMPLE[:4]),
                      Text("yes", style="bold green") if ok else Text("no", style="dim"))
        k, n = s.accepted()
        return panel(t, f"{s.source} · refinements accepted {k} of {n}", "green")


def _status(s: FrontierState, options: DashboardOptions) -> str:
    k, n = s.accepted()
    return f"{s.source}: {k} of {n} refinements accepted (r-IFD lower, IFD and r-IFD < 1)"


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/accepted" not in have:
        return {}
    steps, accepted = run.read(f"{source}/accepted")
    accepted = accepted.astype(bool)
    names = _names(describe, accepted.shape[1])
    last = {m: run.read(f"{source}/{m}")[1][-1] for m in _PER_SAMPLE if f"{source}/{m}" in have}
    rows = [
        {"sample": n, **{m: json_number(last[m][i]) if m in last else None for m in _PER_SAMPLE},
         "accepted": bool(accepted[-1, i])}
        for i, n in enumerate(names)
    ]
    share = accepted.mean(axis=1) if accepted.shape[1] else np.full(len(steps), math.nan)
    return {
        "step": int(steps[-1]),
        "n_samples": len(rows),
        "accepted_fraction_first": json_number(share[0]),
        "accepted_fraction": json_number(share[-1]),
        "accepted": [r["sample"] for r in rows if r["accepted"]],
        "samples": rows[:limit],
    }


def _summary_lines(sec: dict[str, Any]) -> list[str]:
    rows = [[r["sample"], *(r[m] for m in _PER_SAMPLE), r["accepted"]] for r in sec["samples"]]
    return [
        "",
        f"  refinements accepted (r-IFD lower than the original's, IFD < 1, r-IFD < 1): "
        f"{fmt_num(sec['accepted_fraction_first'])} at the first reading, {fmt_num(sec['accepted_fraction'])}"
        f" at step {sec['step']}",
        table(["sample", "IFD orig", "IFD ref", "r-IFD orig", "r-IFD ref", "d IFD", "d r-IFD", "accepted"], rows,
              indent="    "),
    ]


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """The accepted fraction over steps, and per sample the r-IFD difference (refined - original)."""
    steps, accepted = run.read(f"{source}/accepted")
    ax.plot(steps, accepted.astype(np.float64).mean(axis=1), color="black", linewidth=2, label="accepted fraction")
    if f"{source}/d_r_ifd" in set(run.metrics(f"{source}/")):
        _, d = run.read(f"{source}/d_r_ifd")
        names = [printable(n) for n in _names(run.describe(source), d.shape[1])]
        for j in range(min(max_series, d.shape[1])):
            ax.plot(steps, d[:, j], linewidth=0.8, alpha=0.7, label=f"d r-IFD {names[j]}")
    ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("step")
    ax.set_title(f"{printable(source)}: refinements within the student's frontier")
    ax.legend(fontsize="x-small", loc="best")


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "accepted" not in t:
        return None
    acc = t["accepted"].astype(bool).reshape(-1)
    d = t["d_r_ifd"].astype(np.float64).reshape(-1) if "d_r_ifd" in t else np.array([math.nan])
    d = d[np.isfinite(d)]
    median = float(np.median(d)) if d.size else math.nan
    return f"accepted {int(acc.sum())}/{acc.size}  median d r-IFD {fmt_num(median)}"


def assert_accepted_at_least(
    records: RecordsLike, min_fraction: float, *, after_step: Optional[int] = None, source: Optional[str] = None
) -> None:
    """At every reading (after ``after_step``) at least ``min_fraction`` of the refinements are accepted.

    Raises:
        AssertionError: naming the first step below the limit, with a table.
    """
    if not (isinstance(min_fraction, (int, float)) and 0.0 <= min_fraction <= 1.0):
        raise ValueError(f"Expected `min_fraction` in [0, 1], got {min_fraction!r}.")
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    data = pick_source(collect(records), TYPE, source)
    share = data.metric("accepted").astype(bool).mean(axis=1)
    bad = ~(share >= min_fraction)
    if after_step is not None:
        bad &= data.steps > after_step
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        rows = [(int(data.steps[j]), share[j]) for j in sample_rows(len(data.steps), k)]
        mark = [r[0] for r in rows].index(int(data.steps[k]))
        raise AssertionError(
            f"accepted fraction {fmt_num(share[k])} < {fmt_num(min_fraction)} at step {int(data.steps[k])}\n"
            + table(["step", "accepted"], rows, mark=mark)
        )


@dataclass(frozen=True)
class AcceptedAtLeast(kinds.Expectation):
    """At least ``min_fraction`` of the refinements are accepted at every reading."""

    min_fraction: float
    kind = TYPE

    @property
    def label(self) -> str:
        return f"AcceptedAtLeast({self.min_fraction})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_accepted_at_least(data, self.min_fraction)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "frontier",
        globals(),
        schema={
            **kinds.metrics(_PER_SAMPLE, NUMBER, ("samples",)),
            **kinds.metrics(("preferred", "accepted", "nonfinite"), FLAG, ("samples",)),
            "accepted_fraction": Metric(NUMBER),
        },
        axes={"samples": lambda d: d.get("samples")},
        state=FrontierState,
        panel=lambda s, o: FrontierPanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("accepted",),
        assertions={"assert_accepted_at_least": assert_accepted_at_least},
        expectations=(AcceptedAtLeast,),
    )
)
