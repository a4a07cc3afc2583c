"""What the shared layers show of a FormatProbe source: its probe kind (``probes.core.kinds``).

Record schema and format labels (the named formats plus ``other``), the ``probes summary`` collapse
events and final distribution, the dashboard's format panel (share bars, entropy, collapse banner),
the ``probes plot`` stacked distribution, the ``probes replay`` line, and the assertion
``assert_no_format_collapse`` with the expectation :class:`NoFormatCollapse`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from probes.console.numbers import MISSING, fmt_num, fmt_share, printable, sample_rows, table
from probes.console.panels import RowsPanel, panel, panel_table
from probes.console.sparkline import ShareBar, sparkline_text
from probes.console.states import (
    DashboardOptions,
    NewAlert,
    SourceState,
    display_names,
    floats,
    nonfinite_alerts,
    scalar,
)
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER, Metric
from probes.runlog.summary import json_int, json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "FormatPanel",
    "FormatState",
    "NoFormatCollapse",
    "assert_no_format_collapse",
    "collapse_events",
    "format_names",
]

TYPE = "FormatProbe"
_SCALARS = (
    "entropy_nats", "entropy_bits", "norm_entropy", "eff_formats", "dominant", "dominant_share", "kl_from_first",
    "unclassified", "n",
)


def _formats(describe: Mapping[str, Any]) -> Optional[list[Any]]:
    formats = describe.get("formats")
    if not isinstance(formats, (list, tuple)):
        return None
    return [*formats, "other"]


def format_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Format names of a FormatProbe plus the final ``"other"`` bucket."""
    return KIND.labels(describe, "formats")


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


# --- dashboard ----------------------------------------------------------------------------------


class FormatState(SourceState):
    """Format distribution: latest reading, entropy history and the collapse detector's state."""

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        formats = display_names(self.describe.get("formats"), "format") or []
        other = self.describe.get("other")
        self.other_name = other if isinstance(other, str) and other else "other"
        self.names = [*formats, self.other_name]
        self.latest: dict[str, list[float]] = {}
        self.entropy_bits = self.history()
        self.collapsed = False
        self.collapse_step = -1

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.latest = {k: floats(v) for k, v in tensors.items()}
        n = len(self.latest.get("dist", []))
        if n and len(self.names) != n:
            known = self.names[:-1][: n - 1]
            self.names = [*known, *(f"format{i}" for i in range(len(known), n - 1)), self.other_name]
        alerts = nonfinite_alerts(self.source, "dist", tensors.get("dist"), self.names, step)
        self.entropy_bits.append(step, scalar(tensors, "entropy_bits"))
        collapsed = bool(scalar(tensors, "collapsed") == 1.0)
        if collapsed and not self.collapsed:
            self.collapse_step = step
            text = f"{self.source}: collapsed to {self.dominant_name} ({100 * self.scalar('dominant_share'):.1f}%)"
            alerts.append(NewAlert(f"{self.source}/collapse", text, step, "warning"))
        self.collapsed = collapsed
        return alerts

    def scalar(self, name: str) -> float:
        """Latest value of a scalar metric (NaN when absent)."""
        values = self.latest.get(name)
        return values[0] if values else math.nan

    @property
    def dominant_name(self) -> str:
        """Name of the dominant format of the latest reading (an em dash when nothing was classified)."""
        i = self.scalar("dominant")
        return self.names[int(i)] if math.isfinite(i) and 0 <= int(i) < len(self.names) else MISSING

    @property
    def share_basis(self) -> str:
        """``" of classified"`` when the dominant share excludes an unclassified remainder, else ``""``.

        FormatProbe computes the dominant share, entropy and KL over the named formats,
        renormalised, unless its ``describe()`` says ``include_other``.
        """
        unclassified = self.scalar("unclassified")
        if self.describe.get("include_other") or not (math.isfinite(unclassified) and unclassified >= 0.0005):
            return ""
        return " of classified"


#: formats the panel always shows (the dashboard's ``max_rows`` when larger)
FORMAT_ROWS = 16


class FormatPanel(RowsPanel[FormatState]):
    """Format distribution bars, entropy sparkline, dominant format and the collapse banner."""

    def _title(self) -> str:
        s = self.state
        parts = [
            s.source,
            f"H {s.scalar('entropy_bits'):.2f} bits",
            f"norm {s.scalar('norm_entropy'):.2f}",
            f"eff {s.scalar('eff_formats'):.2f}",
        ]
        n = s.scalar("n")
        if math.isfinite(n) and n > 0:
            parts.append(f"n {int(n)}")
        return " · ".join(parts)

    def _footer(self) -> Text:
        s = self.state
        _, entropy = s.entropy_bits.series()
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("dominant ", style="dim")
        text.append(f"{s.dominant_name} {fmt_share(s.scalar('dominant_share'))}", style="bold")
        text.append(s.share_basis, style="dim")
        text.append("  entropy ", style="dim")
        text.append(sparkline_text(entropy, 24), style="yellow")
        text.append(f" {entropy[0]:.2f}→{entropy[-1]:.2f} bits" if entropy else "")
        kl = s.scalar("kl_from_first")
        if math.isfinite(kl):
            text.append("  KL from first ", style="dim")
            text.append(f"{kl:.3f}")
        return text

    def __rich__(self) -> Panel:
        s = self.state
        dist = s.latest.get("dist", [])
        # every format in the spec's order (the one rule of the format views: a distribution is
        # read whole); only beyond FORMAT_ROWS formats are the smallest shares left out
        order = sorted(range(len(dist)), key=lambda i: -dist[i] if math.isfinite(dist[i]) else math.inf)
        shown = sorted(order[: max(self.max_rows, FORMAT_ROWS)])
        extra = [k for k in ("mean_reward", "accuracy") if any(math.isfinite(v) for v in s.latest.get(k, [math.nan]))]
        t = panel_table(caption=f"+{len(dist) - len(shown)} more formats" if len(dist) > len(shown) else None)
        t.add_column("format", no_wrap=True, overflow="ellipsis", min_width=5, max_width=24)
        t.add_column("share", justify="right", no_wrap=True)
        for k in extra:
            t.add_column("reward" if k == "mean_reward" else "acc", justify="right", no_wrap=True)
        t.add_column("", no_wrap=True, ratio=1)
        dominant = int(s.scalar("dominant")) if math.isfinite(s.scalar("dominant")) else -1
        for i in shown:
            style = "bold green" if i == dominant else "green"
            cells: list[RenderableType] = [s.names[i], fmt_share(dist[i])]
            for k in extra:
                v = s.latest[k][i] if i < len(s.latest[k]) else math.nan
                cells.append(f"{v:.2f}" if math.isfinite(v) else MISSING)
            t.add_row(*cells, ShareBar(dist[i], style=style))
        parts: list[RenderableType] = []
        if s.collapsed:
            banner = (
                f"COLLAPSED to {s.dominant_name} ({fmt_share(s.scalar('dominant_share'))}) since step {s.collapse_step}"
            )
            parts.append(Text(banner, style="bold white on red", justify="center", no_wrap=True, overflow="ellipsis"))
        parts += [t, self._footer()]
        return panel(Group(*parts), self._title(), "red" if s.collapsed else "green")


def _status(s: FormatState, options: DashboardOptions) -> str:
    share = f"{fmt_share(s.scalar('dominant_share'))}{s.share_basis}"
    text = f"{s.source}: {s.dominant_name} {share}, H {s.scalar('entropy_bits'):.2f} bits"
    return text + (", COLLAPSED" if s.collapsed else "")


# --- probes summary -----------------------------------------------------------------------------


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
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
        out["final_distribution"] = {n: json_number(v) for n, v in zip(names, dist[-1])}
        if "dominant" not in series and dist.shape[1]:
            series["dominant"] = np.argmax(np.nan_to_num(dist.astype(np.float64), nan=-np.inf), axis=1)
    else:
        names = format_names(describe) or []

    def name_of(value: Any) -> str:
        i = json_int(value)
        if i is None:
            return "-"
        return names[i] if 0 <= i < len(names) else str(i)

    if "dominant" in series:
        out["final_dominant"] = name_of(series["dominant"][-1])
        if "dominant_share" in series:
            out["final_dominant_share"] = json_number(series["dominant_share"][-1])
    # rows of the generic metric table that carry no data for this source (the text summary leaves
    # them out): the categorical dominant index (named above instead), a sample count that stayed
    # 0 (scored mode reads probabilities, it samples nothing), rewards and accuracies never given
    hidden = ["dominant"] if "dominant" in series else []
    if f"{source}/n" in have and not np.any(run.read(f"{source}/n")[1]):
        hidden.append("n")
    for m in ("mean_reward", "accuracy"):
        if f"{source}/{m}" in have and not np.isfinite(run.read(f"{source}/{m}")[1].astype(np.float64)).any():
            hidden.append(m)
    out["hidden_metrics"] = hidden
    if "entropy_bits" in series:
        out["final_entropy_bits"] = json_number(series["entropy_bits"][-1])
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
                    "dominant_share": json_number(series["dominant_share"][k]) if "dominant_share" in series else None,
                    "entropy_bits": json_number(series["entropy_bits"][k]) if "entropy_bits" in series else None,
                }
            )
        out["collapse_events"] = events
    return out


def _summary_lines(fm: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    events = fm.get("collapse_events")
    if events is not None:
        lines += ["", f"  collapse events: {len(events) or 'none'}"]
        if events:
            rows = [
                [e["step"], e["event"], e["dominant"] or "-", e["dominant_share"], e["entropy_bits"]] for e in events
            ]
            lines.append(table(["step", "event", "dominant", "share", "entropy (bits)"], rows, indent="    "))
    if fm.get("final_dominant") is not None:
        share = fm.get("final_dominant_share")
        lines.append(f"  final dominant format: {printable(fm['final_dominant'])}"
                     + (f" ({fmt_num(share)})" if share is not None else ""))
    if "final_distribution" in fm:
        dist = ", ".join(f"{printable(k)} {fmt_num(v)}" for k, v in fm["final_distribution"].items())
        lines.append(f"  final distribution: {dist}")
    return lines


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """The format distribution as a stacked area over steps, the collapse step marked."""
    steps, dist = run.read(f"{source}/dist")
    dist = np.nan_to_num(dist.astype(np.float64))
    names = [printable(n) for n in format_names(run.describe(source)) or []]
    if len(names) != dist.shape[1]:
        names = [str(i) for i in range(dist.shape[1])]
    ax.stackplot(steps, dist.T, labels=names, alpha=0.85)
    ax.set_ylim(0, 1)
    ax.set_xlim(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share of outputs")
    title = f"{printable(source)}: format distribution"
    if f"{source}/collapsed" in run.metrics(f"{source}/"):
        events = [s for s, what in collapse_events(steps, run.read(f"{source}/collapsed")[1]) if what == "collapsed"]
        if events:
            ax.axvline(events[0], color="black", linestyle="--", linewidth=1.5, label=f"collapse at step {events[0]}")
            title += f" (collapse at step {events[0]})"
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "entropy_bits" not in t and "dist" not in t:
        return None
    names = format_names(describe) or []
    parts = []
    if "entropy_bits" in t:
        parts.append(f"entropy {fmt_num(float(t['entropy_bits']))} bits")
    if "dominant" in t:
        d = float(t["dominant"])
        i = int(d) if math.isfinite(d) else -1
        name = names[i] if 0 <= i < len(names) else ("-" if i < 0 else str(i))
        share = f" {fmt_num(float(t['dominant_share']))}" if "dominant_share" in t else ""
        parts.append(f"dominant {name}{share}")
    if "collapsed" in t:
        parts.append("COLLAPSED" if bool(t["collapsed"]) else "not collapsed")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


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
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    if min_entropy_bits is None and max_dominant_share is None:
        min_entropy_bits = 0.5
    data = pick_source(collect(records), TYPE, source)
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
            limits.append(f"min entropy {fmt_num(min_entropy_bits)} bits")
        if max_dominant_share is not None:
            limits.append(f"max dominant share {fmt_num(max_dominant_share)}")
        rows = [
            (int(data.steps[j]), ent[j], names[dom[j]] if 0 <= dom[j] < len(names) else int(dom[j]), share[j])
            for j in sample_rows(len(ent), k)
        ]
        mark = [r[0] for r in rows].index(int(data.steps[k]))
        raise AssertionError(
            f"format distribution collapsed at step {int(data.steps[k])}: {fname!r} holds {fmt_num(share[k])}"
            f" of outputs, entropy {fmt_num(ent[k])} bits ({', '.join(limits)})\n"
            + table(["step", "entropy_bits", "dominant", "share"], rows, mark=mark)
        )


@dataclass(frozen=True)
class NoFormatCollapse(kinds.Expectation):
    """The format entropy stays >= ``min_entropy_bits`` and/or the dominant share <= ``max_dominant_share``."""

    min_entropy_bits: Optional[float] = 0.5
    max_dominant_share: Optional[float] = None
    kind = TYPE

    @property
    def label(self) -> str:
        return (
            f"NoFormatCollapse(min_entropy_bits={self.min_entropy_bits}, max_dominant_share={self.max_dominant_share})"
        )

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_no_format_collapse(
            data, min_entropy_bits=self.min_entropy_bits, max_dominant_share=self.max_dominant_share
        )


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "format",
        globals(),
        schema={
            **kinds.metrics(("dist", "mean_reward", "accuracy"), NUMBER, ("formats",)),
            **kinds.metrics(_SCALARS, NUMBER),
            "collapsed": Metric(FLAG),
        },
        axes={"formats": _formats},
        state=FormatState,
        panel=lambda s, o: FormatPanel(s, max_rows=o.max_rows).__rich__(),
        column="side",
        plot_needs=("dist",),
        assertions={"assert_no_format_collapse": assert_no_format_collapse},
        expectations=(NoFormatCollapse,),
    )
)
