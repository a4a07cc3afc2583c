"""Sparklines and share bars: tiny self-measuring renderables for table cells."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style, StyleType

__all__ = ["ShareBar", "Sparkline", "bar_text", "sparkline_text"]

_TICKS = "▁▂▃▄▅▆▇█"
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _resample(values: Sequence[float], width: int) -> list[float]:
    """``values`` as is when they fit in ``width``, else ``width`` evenly spaced samples (ends kept)."""
    n = len(values)
    if n <= width:
        return list(values)
    if width == 1:
        return [values[-1]]
    return [values[round(i * (n - 1) / (width - 1))] for i in range(width)]


def sparkline_text(values: Sequence[float], width: int) -> str:
    """Render ``values`` as at most ``width`` block characters scaled between their min and max.

    Non-finite values render as a space. A constant series renders at the lowest level.

    Args:
        values: the series, oldest first.
        width: maximum number of characters (at least 1).

    Raises:
        ValueError: if ``width`` is smaller than 1.
    """
    if width < 1:
        raise ValueError(f"Expected `width` to be at least 1, got {width!r}.")
    points = _resample(values, width)
    finite = [v for v in points if math.isfinite(v)]
    if not finite:
        return " " * len(points)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    chars = []
    for v in points:
        if not math.isfinite(v):
            chars.append(" ")
        elif span <= 0.0:
            chars.append(_TICKS[0])
        else:
            chars.append(_TICKS[min(len(_TICKS) - 1, int((v - lo) / span * len(_TICKS)))])
    return "".join(chars)


def bar_text(fraction: float, width: int) -> str:
    """A horizontal bar ``width`` cells wide filled to ``fraction`` (clamped to [0, 1]) in eighths."""
    if width < 1:
        raise ValueError(f"Expected `width` to be at least 1, got {width!r}.")
    f = fraction if math.isfinite(fraction) else 0.0
    eighths = round(min(1.0, max(0.0, f)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(width)


class Sparkline:
    """A sparkline that fills the width its table cell gives it (between ``min_width`` and the data).

    Args:
        values: the series, oldest first.
        style: rich style of the ticks.
        min_width: narrowest rendering.
    """

    def __init__(self, values: Sequence[float], *, style: StyleType = "", min_width: int = 4) -> None:
        self.values = list(values)
        self.style = style
        self.min_width = min_width

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max(self.min_width, len(self.values))
        return Measurement(min(self.min_width, options.max_width), min(widest, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, min(options.max_width, max(self.min_width, len(self.values))))
        text = sparkline_text(self.values, width) if self.values else ""
        yield Segment(text.ljust(width), console.get_style(self.style) if self.style else Style())


class ShareBar:
    """A bar filled to ``fraction`` of the width its table cell gives it.

    Args:
        fraction: how full, in [0, 1] (clamped; non-finite renders empty).
        style: rich style of the bar.
        min_width, max_width: the range of widths the bar asks for.
    """

    def __init__(self, fraction: float, *, style: StyleType = "", min_width: int = 5, max_width: int = 40) -> None:
        self.fraction = fraction
        self.style = style
        self.min_width = min_width
        self.max_width = max_width

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(self.min_width, options.max_width), min(self.max_width, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, min(options.max_width, self.max_width))
        yield Segment(bar_text(self.fraction, width), console.get_style(self.style) if self.style else Style())
