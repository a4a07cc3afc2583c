"""Number formatting shared by the panels and the plain summary line (pure functions)."""

from __future__ import annotations

import math

__all__ = ["fmt_count", "fmt_duration", "fmt_prob", "fmt_rate", "fmt_ratio", "fmt_share"]

MISSING = "—"


def _bad(x: float) -> str | None:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def fmt_prob(p: float) -> str:
    """A probability in at most 7 characters: ``0.412``, ``0.0123``, ``4.5e-05``."""
    bad = _bad(p)
    if bad is not None:
        return bad
    r = float(f"{p:.3g}")  # decide the layout on the rounded value: float32 0.01 is 0.0099999998
    if r == 0.0 or r >= 0.1:
        return f"{r:.3f}"
    if r >= 0.01:
        return f"{r:.4f}"
    return f"{p:.1e}"


def fmt_ratio(r: float) -> str:
    """A multiplicative change: ``×3.21``, ``×0.05``, ``×1.2e+04``."""
    bad = _bad(r)
    if bad is not None:
        return bad
    if r == 0.0:
        return "×0"
    short = f"{r:.3g}"
    if "e" in short or abs(r) < 0.01:
        return f"×{r:.1e}"
    return f"×{short}"


def fmt_share(x: float) -> str:
    """A fraction as a percentage with one decimal: ``82.5%``; ``<0.1%`` for tiny non-zero shares."""
    bad = _bad(x)
    if bad is not None:
        return bad
    return "<0.1%" if 0.0 < x < 0.0005 else f"{100.0 * x:.1f}%"


def fmt_rate(steps_per_s: float | None) -> str:
    """Optimizer steps per second, or an em dash when unknown."""
    if steps_per_s is None or not math.isfinite(steps_per_s):
        return MISSING
    return f"{steps_per_s:.1f}" if steps_per_s < 100 else f"{steps_per_s:.0f}"


def fmt_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (hours grow as needed), or an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return MISSING
    total = int(seconds)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def fmt_count(n: int) -> str:
    """An integer with thousands separators: ``12,345``."""
    return f"{n:,}"
