"""The dashboard's panels. Each reads one source state and renders itself through ``__rich__``.

Panels are built under the dashboard's lock and hold only host values once built, so the rich
objects they return can be drawn from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from probes.console.fmt import MISSING, fmt_count, fmt_duration, fmt_prob, fmt_rate, fmt_ratio, fmt_share
from probes.console.sources import FormatState, KeywordState, PrimingState
from probes.console.sparkline import ShareBar, Sparkline, sparkline_text

__all__ = ["Alert", "AlertsPanel", "FormatPanel", "KeywordPanel", "PrimingPanel", "RunHeader"]

_BOX = box.ROUNDED


def _table(*, caption: str | None = None) -> Table:
    return Table(
        box=None, expand=True, pad_edge=False, show_edge=False, padding=(0, 1), caption=caption, caption_justify="left"
    )


def _name_column(table: Table, header: str, *, max_width: int) -> None:
    """The name column: the only one that gives way on a narrow console. It is collapsible (not
    ``no_wrap``) so rich narrows it first, while each cell is a one-line :func:`_name` that ends
    in an ellipsis where it is cut; the figures beside it keep their full width."""
    table.add_column(header, min_width=6, max_width=max_width)


def _name(name: str) -> Text:
    return Text(name, no_wrap=True, overflow="ellipsis")


def _ratio_style(r: float) -> str:
    if not math.isfinite(r):
        return "bold red"
    return "green" if r > 1.0 else "red" if r < 1.0 else ""


@dataclass
class Alert:
    """One alert line: ``count`` repeats of the problem ``key``, the last at ``step``."""

    key: str
    text: str
    step: int | None
    level: str = "error"
    count: int = 1
    seq: int = 0


@dataclass
class RunHeader:
    """Step, epoch, optimizer steps per second and elapsed time on one line."""

    title: str
    step: int
    epoch: int
    steps_per_s: float | None
    elapsed: float | None
    note: str = ""

    def __rich__(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(self.title, style="bold cyan")
        if self.note:
            text.append(f" {self.note}", style="cyan")
        if self.step < 0:
            text.append("  waiting for the first reading…", style="dim")
            return text
        for label, value in (
            ("step", fmt_count(self.step)),
            ("epoch", str(self.epoch) if self.epoch >= 0 else MISSING),
            ("steps/s", fmt_rate(self.steps_per_s)),
            ("elapsed", fmt_duration(self.elapsed)),
        ):
            text.append(f"  {label} ", style="dim")
            text.append(value, style="bold")
        return text


class KeywordPanel:
    """The pairs whose probability moved most since the first reading.

    Args:
        state: the keyword source.
        top_n: rows shown.
    """

    def __init__(self, state: KeywordState, *, top_n: int) -> None:
        self.state = state
        self.top_n = top_n

    def __rich__(self) -> Panel:
        s = self.state
        rows = s.top(self.top_n)
        label = "p_seq" if s.metric == "p_seq" else "p_first"
        table = _table()
        _name_column(table, "pair", max_width=40)
        table.add_column(label, justify="right", no_wrap=True)
        table.add_column(f"step {s.base_step}", justify="right", no_wrap=True)
        table.add_column("change", justify="right", no_wrap=True)
        table.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for name, p, base, series in rows:
            r = p / base if base > 0 else math.inf
            table.add_row(
                _name(name), fmt_prob(p), fmt_prob(base), Text(fmt_ratio(r), style=_ratio_style(r)), Sparkline(series)
            )
        title = f"{s.source} · top {len(rows)} of {len(s.names)} pairs by change"
        return Panel(table, title=title, title_align="left", box=_BOX, border_style="blue")


class PrimingPanel:
    """Memorization and priming per learning sample, with the surprise flag.

    Args:
        state: the priming source.
        max_rows: samples shown (the rest are counted in the caption).
        threshold: surprise threshold shown when the probe's ``describe`` has none.
    """

    def __init__(self, state: PrimingState, *, max_rows: int, threshold: float) -> None:
        self.state = state
        self.max_rows = max_rows
        self.threshold = threshold

    def __rich__(self) -> Panel:
        s = self.state
        n = len(s.names)
        shown = min(n, self.max_rows)
        thr = s.threshold if s.threshold is not None else self.threshold
        table = _table(caption=f"+{n - shown} more samples" if n > shown else None)
        _name_column(table, "sample", max_width=32)
        for head in ("p before", "p now", "s_mem", "s_prime", "exp"):
            table.add_column(head, justify="right", no_wrap=True)
        table.add_column("surprise", no_wrap=True)
        table.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for i in range(shown):
            has_base = s.value("has_baseline", i) == 1.0 or "has_baseline" not in s.latest
            p_before = s.value("p_before", i)
            flag = s.value("surprising", i)
            surprising = flag == 1.0 if math.isfinite(flag) else (has_base and p_before < thr)
            exposures = s.value("exposures", i)
            s_mem, s_prime = s.value("s_mem", i), s.value("s_prime", i)
            table.add_row(
                _name(s.names[i]),
                fmt_prob(p_before) if has_base and math.isfinite(p_before) else MISSING,
                fmt_prob(s.value("p_learn", i)),
                Text(fmt_ratio(s_mem), style=_ratio_style(s_mem)) if has_base else MISSING,
                Text(fmt_ratio(s_prime), style=_ratio_style(s_prime)) if has_base else MISSING,
                str(int(exposures)) if math.isfinite(exposures) else MISSING,
                Text("yes", style="bold magenta") if surprising else Text("no", style="dim"),
                Sparkline(s.trend(i)),
            )
        title = f"{s.source} · surprising: p before < {thr:.0e}"
        return Panel(table, title=title, title_align="left", box=_BOX, border_style="magenta")


class FormatPanel:
    """Format distribution bars, entropy sparkline, dominant format and the collapse banner.

    Args:
        state: the format source.
        max_rows: formats shown (largest shares first when there are more).
    """

    def __init__(self, state: FormatState, *, max_rows: int) -> None:
        self.state = state
        self.max_rows = max_rows

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
        order = sorted(range(len(dist)), key=lambda i: -dist[i] if math.isfinite(dist[i]) else math.inf)
        shown = sorted(order[: self.max_rows])
        extra = [k for k in ("mean_reward", "accuracy") if any(math.isfinite(v) for v in s.latest.get(k, [math.nan]))]
        table = _table(caption=f"+{len(dist) - len(shown)} more formats" if len(dist) > len(shown) else None)
        table.add_column("format", no_wrap=True, overflow="ellipsis", min_width=5, max_width=24)
        table.add_column("share", justify="right", no_wrap=True)
        for k in extra:
            table.add_column("reward" if k == "mean_reward" else "acc", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True, ratio=1)
        dominant = int(s.scalar("dominant")) if math.isfinite(s.scalar("dominant")) else -1
        for i in shown:
            style = "bold green" if i == dominant else "green"
            cells: list[RenderableType] = [s.names[i], fmt_share(dist[i])]
            for k in extra:
                v = s.latest[k][i] if i < len(s.latest[k]) else math.nan
                cells.append(f"{v:.2f}" if math.isfinite(v) else MISSING)
            table.add_row(*cells, ShareBar(dist[i], style=style))
        parts: list[RenderableType] = []
        if s.collapsed:
            banner = (
                f"COLLAPSED to {s.dominant_name} ({fmt_share(s.scalar('dominant_share'))}) since step {s.collapse_step}"
            )
            parts.append(Text(banner, style="bold white on red", justify="center", no_wrap=True, overflow="ellipsis"))
        parts += [table, self._footer()]
        border = "red" if s.collapsed else "green"
        return Panel(Group(*parts), title=self._title(), title_align="left", box=_BOX, border_style=border)


class AlertsPanel:
    """The most recent alerts, oldest first.

    Args:
        alerts: every alert so far (one entry per key, updated on repeats).
        max_alerts: lines shown.
    """

    def __init__(self, alerts: Sequence[Alert], *, max_alerts: int) -> None:
        self.alerts = sorted(alerts, key=lambda a: a.seq)[-max_alerts:]
        self.total = len(alerts)

    def __rich__(self) -> Panel:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column(overflow="fold", ratio=1)
        for a in self.alerts:
            where = f"step {a.step}" if a.step is not None and a.step >= 0 else ""
            text = Text(a.text, style="red" if a.level == "error" else "yellow")
            if a.count > 1:
                text.append(f" (×{a.count})", style="dim")
            grid.add_row(Text(where, style="dim"), text)
        return Panel(grid, title=f"alerts ({self.total})", title_align="left", box=_BOX, border_style="red")
