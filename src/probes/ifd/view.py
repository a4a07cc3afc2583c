"""What the shared layers show of an IFDProbe source: its probe kind (``probes.core.kinds``).

The probe records, per SFT sample, ``ifd = PPL(A | Q) / PPL(A)`` with both perplexities, the flag
``ifd >= 1`` (the instruction does not help predict the answer), the share of flagged samples, and
optionally the reverse score ``r_ifd``. This module declares:

* the record schema over the ``samples`` axis (``describe()["samples"]``);
* the ``probes summary`` section: per sample the first and final IFD, both perplexities, r-IFD and
  the flag, highest final IFD first, and the flagged share first and last;
* the dashboard panel: one row per sample, highest IFD first (non-finite first of all), with an
  IFD sparkline, and the flagged count in the title;
* the ``probes plot`` panel: IFD per sample over steps on a log scale, with the line IFD = 1;
* the ``probes replay`` line: median and maximum IFD, flagged count, median r-IFD;
* the assertions ``assert_ifd_below`` and ``assert_flagged_at_most``, and the expectations
  :class:`IFDBelow` and :class:`FlaggedAtMost`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from rich.panel import Panel
from rich.text import Text

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
from probes.core.kinds import FLAG, NUMBER, Metric
from probes.runlog.summary import json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "FlaggedAtMost",
    "IFDBelow",
    "IFDPanel",
    "IFDState",
    "assert_flagged_at_most",
    "assert_ifd_below",
    "ifd_order",
]

TYPE = "IFDProbe"
_PER_SAMPLE = ("ifd", "ppl_answer_cond", "ppl_answer", "r_ifd", "ppl_instruction_cond", "ppl_instruction")


def ifd_order(ifd: Sequence[float]) -> list[int]:
    """Sample indices by IFD, highest first; non-finite values first of all (stable)."""
    return sorted(range(len(ifd)), key=lambda i: -ifd[i] if math.isfinite(ifd[i]) else -math.inf)


def _flagged(ifd: np.ndarray, flagged: Optional[np.ndarray]) -> np.ndarray:
    """The recorded flags, else ``ifd >= 1`` (the probe's definition)."""
    return np.asarray(flagged, dtype=bool) if flagged is not None else np.asarray(ifd, dtype=np.float64) >= 1.0


# --- dashboard ----------------------------------------------------------------------------------


def _f3(x: float) -> str:
    return f"{x:.3f}"  # nan and inf as such


class IFDState(ElementState):
    """The latest IFD reading per sample and a history of log10 IFD per sample."""

    axis = "samples"
    element = "sample"
    counted_by = "ifd"

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.log10_ifd = self.history()

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        self.log10_ifd.append(step, [math.log10(v) if v > 0 else math.nan for v in self.latest.get("ifd", [])])
        return nonfinite_alerts(self.source, "ifd", tensors.get("ifd"), self.names, step)


    def is_flagged(self, i: int) -> bool:
        """Sample ``i`` is flagged (the record's flag, else IFD >= 1)."""
        flag = self.value("flagged", i)
        return flag == 1.0 if math.isfinite(flag) else self.value("ifd", i) >= 1.0

    def flagged(self) -> tuple[int, int]:
        """Flagged samples at the latest reading, and samples."""
        n = len(self.latest.get("ifd", []))
        return sum(self.is_flagged(i) for i in range(n)), n

    def trend(self, i: int) -> list[float]:
        """History of log10 IFD for sample ``i``."""
        return self.column(self.log10_ifd, i)


class IFDPanel(RowsPanel[IFDState]):
    """IFD, both perplexities, r-IFD and the flag per sample, highest IFD first."""

    def __rich__(self) -> Panel:
        s = self.state
        ifd = s.latest.get("ifd", [])
        order = ifd_order(ifd)[: self.max_rows]
        reverse = "r_ifd" in s.latest
        t = panel_table(caption=f"+{len(ifd) - len(order)} more samples" if len(ifd) > len(order) else None)
        name_column(t, "sample", max_width=32)
        for head in ("IFD", "PPL(A|Q)", "PPL(A)", *(("r-IFD",) if reverse else ())):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("flag", no_wrap=True)
        t.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for i in order:
            cells: list[Any] = [
                name_cell(s.names[i]),
                Text(_f3(ifd[i]), style="bold red" if s.is_flagged(i) else ""),
                fmt_num(s.value("ppl_answer_cond", i)),
                fmt_num(s.value("ppl_answer", i)),
            ]
            if reverse:
                cells.append(_f3(s.value("r_ifd", i)))
            cells.append(Text("yes", style="bold red") if s.is_flagged(i) else Text("no", style="dim"))
            t.add_row(*cells, Sparkline(s.trend(i)))
        k, n = s.flagged()
        return panel(t, f"{s.source} · flagged {k} of {n} (IFD ≥ 1)", "yellow")


def _median(values: Sequence[float]) -> float:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    return float(np.median(finite)) if finite.size else math.nan


def _status(s: IFDState, options: DashboardOptions) -> str:
    k, n = s.flagged()
    text = f"{s.source}: {n} samples, {k} flagged (IFD ≥ 1), median IFD {_f3(_median(s.latest.get('ifd', [])))}"
    if "r_ifd" in s.latest:
        text += f", median r-IFD {_f3(_median(s.latest['r_ifd']))}"
    return text


# --- probes summary -----------------------------------------------------------------------------


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/ifd" not in have:
        return {}
    steps, ifd = run.read(f"{source}/ifd")
    ifd = ifd.astype(np.float64)
    last = {m: run.read(f"{source}/{m}")[1][-1] for m in (*_PER_SAMPLE, "flagged") if f"{source}/{m}" in have}
    names = KIND.labels(describe, "samples") or []
    if len(names) != ifd.shape[1]:
        names = [str(i) for i in range(ifd.shape[1])]
    flags = _flagged(ifd, run.read(f"{source}/flagged")[1] if "flagged" in last else None)
    rows = [
        {
            "sample": name,
            "ifd_first": json_number(ifd[0, i]),
            "ifd": json_number(ifd[-1, i]),
            "ppl_answer_cond": json_number(last["ppl_answer_cond"][i]) if "ppl_answer_cond" in last else None,
            "ppl_answer": json_number(last["ppl_answer"][i]) if "ppl_answer" in last else None,
            "r_ifd": json_number(last["r_ifd"][i]) if "r_ifd" in last else None,
            "flagged": bool(flags[-1, i]),
        }
        for i, name in enumerate(names)
    ]
    share = flags.mean(axis=1) if flags.shape[1] else np.full(len(steps), math.nan)
    return {
        "step": int(steps[-1]),
        "n_samples": len(rows),
        "flagged": [r["sample"] for r in rows if r["flagged"]],
        "flagged_share_first": json_number(share[0]),
        "flagged_share": json_number(share[-1]),
        "median_ifd": json_number(_median(ifd[-1].tolist())),
        "samples": [rows[i] for i in ifd_order(ifd[-1].tolist())][:limit],
        "sorted_by": "ifd",
    }


def _summary_lines(sec: dict[str, Any]) -> list[str]:
    names = f": {printable(', '.join(sec['flagged']))}" if sec["flagged"] else ""
    rows = [[r["sample"], r["ifd_first"], r["ifd"], r["ppl_answer_cond"], r["ppl_answer"], r["r_ifd"], r["flagged"]]
            for r in sec["samples"]]
    return [
        "",
        f"  flagged samples (IFD >= 1) at step {sec['step']}: {len(sec['flagged'])} of {sec['n_samples']}{names}",
        f"  median IFD {fmt_num(sec['median_ifd'])}; flagged share {fmt_num(sec['flagged_share_first'])} at the first"
        f" reading, {fmt_num(sec['flagged_share'])} at the last",
        table(["sample", "IFD first", "IFD", "PPL(A|Q)", "PPL(A)", "r-IFD", "flagged"], rows, indent="    "),
    ]


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """IFD per sample over steps (log scale), the highest final IFD first, with the line IFD = 1."""
    steps, ifd = run.read(f"{source}/ifd")
    ifd = ifd.astype(np.float64)
    names = [printable(n) for n in KIND.labels(run.describe(source), "samples") or []]
    if len(names) != ifd.shape[1]:
        names = [str(i) for i in range(ifd.shape[1])]
    order = ifd_order(ifd[-1].tolist())[:max_series]
    for j in sorted(order):
        ax.plot(steps, ifd[:, j], label=names[j], linewidth=1.2)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="IFD = 1 (flagged at or above)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("IFD = PPL(A|Q) / PPL(A)")
    flagged = int((ifd[-1] >= 1.0).sum())
    shown = f", {len(order)} of {ifd.shape[1]} with the highest IFD" if len(order) < ifd.shape[1] else ""
    ax.set_title(f"{printable(source)}: IFD per sample ({flagged} of {ifd.shape[1]} flagged at the end{shown})")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(True, which="major", alpha=0.3)


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "ifd" not in t:
        return None
    ifd = t["ifd"].astype(np.float64).reshape(-1)
    finite = ifd[np.isfinite(ifd)]
    flags = _flagged(ifd, t.get("flagged")).reshape(-1)
    parts = [
        f"median IFD {fmt_num(float(np.median(finite)) if finite.size else math.nan)}",
        f"max {fmt_num(float(finite.max()) if finite.size else math.nan)}",
        f"flagged {int(flags.sum())}/{flags.size}",
    ]
    if "r_ifd" in t:
        r = t["r_ifd"].astype(np.float64).reshape(-1)
        r = r[np.isfinite(r)]
        parts.append(f"median r-IFD {fmt_num(float(np.median(r)) if r.size else math.nan)}")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


def _data(records: RecordsLike, source: Optional[str]) -> SourceData:
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    return pick_source(collect(records), TYPE, source)


def assert_ifd_below(
    records: RecordsLike,
    max_ifd: float = 1.0,
    *,
    samples: Optional[Union[str, int, Sequence[Union[str, int]]]] = None,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Every reading (after ``after_step``) of the IFD of the chosen samples (default all) stays
    below ``max_ifd`` (default 1: the instruction helps predict every answer; the probe flags
    ``ifd >= 1``). A NaN IFD fails.

    Raises:
        AssertionError: naming the first sample and step at or over the limit, with a table.
        ValueError: an unknown sample or source.
    """
    if not (isinstance(max_ifd, (int, float)) and max_ifd > 0):
        raise ValueError(f"Expected `max_ifd` > 0, got {max_ifd!r}.")
    data = _data(records, source)
    ifd = data.metric("ifd").astype(np.float64)
    chosen = range(ifd.shape[1]) if samples is None else [samples] if isinstance(samples, (str, int)) else samples
    cols = [data.index_of(s) for s in chosen]
    values = ifd[:, cols]
    bad = ~(values < max_ifd)
    if after_step is not None:
        bad &= (data.steps > after_step)[:, None]
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        names = data.names()
        name = names[cols[c]] if cols[c] < len(names) else str(cols[c])
        why = "the model's output was not finite there" if math.isnan(values[r, c]) else f"not below {fmt_num(max_ifd)}"
        have = [m for m in ("ifd", "ppl_answer_cond", "ppl_answer") if m in data.metrics]
        rows = [(int(data.steps[j]), *(data.metrics[m][j, cols[c]] for m in have))
                for j in sample_rows(len(data.steps), r)]
        mark = [row[0] for row in rows].index(int(data.steps[r]))
        raise AssertionError(
            f"IFD of sample {name!r} is {fmt_num(values[r, c])} at step {int(data.steps[r])}, {why}\n"
            + table(["step", *have], rows, mark=mark)
        )


def assert_flagged_at_most(
    records: RecordsLike, max_share: float, *, after_step: Optional[int] = None, source: Optional[str] = None
) -> None:
    """At every reading (after ``after_step``) at most ``max_share`` of the samples are flagged
    (IFD >= 1).

    Raises:
        AssertionError: naming the first step over the limit and its flagged samples, with a table.
    """
    if not (isinstance(max_share, (int, float)) and 0.0 <= max_share <= 1.0):
        raise ValueError(f"Expected `max_share` in [0, 1], got {max_share!r}.")
    data = _data(records, source)
    ifd = data.metric("ifd").astype(np.float64)
    flags = _flagged(ifd, data.metrics.get("flagged"))
    share = flags.mean(axis=1)
    bad = ~(share <= max_share)
    if after_step is not None:
        bad &= data.steps > after_step
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        names = data.names()
        which = [names[i] if i < len(names) else str(i) for i in np.nonzero(flags[k])[0].tolist()]
        rows = [(int(data.steps[j]), int(flags[j].sum()), share[j]) for j in sample_rows(len(data.steps), k)]
        mark = [row[0] for row in rows].index(int(data.steps[k]))
        raise AssertionError(
            f"{int(flags[k].sum())} of {flags.shape[1]} samples flagged (IFD >= 1) at step {int(data.steps[k])}:"
            f" share {fmt_num(share[k])} > {fmt_num(max_share)} ({', '.join(which[:10])})\n"
            + table(["step", "flagged", "share"], rows, mark=mark)
        )


@dataclass(frozen=True)
class IFDBelow(kinds.Expectation):
    """The IFD of the chosen samples stays below ``max_ifd`` (default 1)."""

    max_ifd: float = 1.0
    samples: Optional[tuple[Union[str, int], ...]] = None
    kind = TYPE

    @property
    def label(self) -> str:
        return f"IFDBelow({self.max_ifd})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_ifd_below(data, self.max_ifd, samples=self.samples)


@dataclass(frozen=True)
class FlaggedAtMost(kinds.Expectation):
    """At most ``max_share`` of the samples are flagged (IFD >= 1) at any reading."""

    max_share: float
    kind = TYPE

    @property
    def label(self) -> str:
        return f"FlaggedAtMost({self.max_share})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_flagged_at_most(data, self.max_share)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "ifd",
        globals(),
        schema={
            **kinds.metrics(_PER_SAMPLE, NUMBER, ("samples",)),
            **kinds.metrics(("flagged", "nonfinite"), FLAG, ("samples",)),
            "frac_flagged": Metric(NUMBER),
        },
        axes={"samples": lambda d: d.get("samples")},
        state=IFDState,
        panel=lambda s, o: IFDPanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("ifd",),
        assertions={"assert_ifd_below": assert_ifd_below, "assert_flagged_at_most": assert_flagged_at_most},
        expectations=(IFDBelow, FlaggedAtMost),
    )
)
