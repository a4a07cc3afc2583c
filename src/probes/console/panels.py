"""The dashboard's shell (run header, alerts) and the building blocks of every kind's panel.

Each probe kind (:mod:`probes.core.kinds`) declares its own panel in its package; the panels build
their tables with :func:`panel_table`, :func:`name_column` and :func:`name_cell` so that every
panel narrows the same way. Panels are built under the dashboard's lock and hold only host values
once built, so the rich objects they return can be drawn from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rich import box
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from probes.console.numbers import MISSING, fmt_count, fmt_duration, fmt_rate

__all__ = [
    "BOX",
    "Alert",
    "AlertsPanel",
    "RowsPanel",
    "RunHeader",
    "name_cell",
    "name_column",
    "panel",
    "panel_table",
    "ratio_style",
]

BOX = box.ROUNDED


def panel_table(*, caption: str | None = None) -> Table:
    """The borderless, full-width table inside a kind's panel (``caption``: a note under it)."""
    return Table(
        box=None, expand=True, pad_edge=False, show_edge=False, padding=(0, 1), caption=caption, caption_justify="left"
    )


def name_column(table: Table, header: str, *, max_width: int) -> None:
    """The name column: the only one that gives way on a narrow console. It is collapsible (not
    ``no_wrap``) so rich narrows it first, while each cell is a one-line :func:`name_cell` that
    ends in an ellipsis where it is cut; the figures beside it keep their full width."""
    table.add_column(header, min_width=6, max_width=max_width)


def name_cell(name: str) -> Text:
    """A cell of the name column (one line, cut with an ellipsis)."""
    return Text(name, no_wrap=True, overflow="ellipsis")


def ratio_style(r: float) -> str:
    """Green for a ratio above 1, red below, bold red when not finite."""
    if not math.isfinite(r):
        return "bold red"
    return "green" if r > 1.0 else "red" if r < 1.0 else ""


S = TypeVar("S")


def panel(body: RenderableType, title: str, border_style: str) -> Panel:
    """A kind's panel: ``body`` in a rounded box titled top left."""
    return Panel(body, title=title, title_align="left", box=BOX, border_style=border_style)


class RowsPanel(Generic[S]):
    """Base of a kind's panel: one row per element of its source (pairs, samples, formats...), at
    most ``max_rows`` of them (the rest counted in the caption). Subclasses implement ``__rich__``.

    Args:
        state: the source's dashboard state.
        max_rows: rows shown.
    """

    def __init__(self, state: S, *, max_rows: int) -> None:
        self.state = state
        self.max_rows = max_rows


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
        return Panel(grid, title=f"alerts ({self.total})", title_align="left", box=BOX, border_style="red")
