"""The one number and table formatter of the library (pure functions, no rich).

The dashboard's panels and plain summary line, the CLI's tables and lines, the probe kinds' views
and the messages of ``probes.testing`` all format through this module:

* :func:`fmt_num`: any figure in 4 significant digits (scientific outside [1e-3, 1e5));
* :func:`table`: a plain-text table, numbers right-aligned, one row optionally marked ``>``;
* :func:`printable`: any name from a run log made safe for a terminal;
* ``fmt_prob``, ``fmt_ratio``, ``fmt_share``, ``fmt_rate``, ``fmt_duration``, ``fmt_count``: the
  compact display forms of the dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

__all__ = [
    "MISSING",
    "fmt_count",
    "fmt_duration",
    "fmt_num",
    "fmt_prob",
    "fmt_rate",
    "fmt_ratio",
    "fmt_share",
    "printable",
    "sample_rows",
    "table",
]

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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x00``, ``\\ud800``...), so that
    any name from a run log can be written to any terminal or file."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def fmt_num(x: Any) -> str:
    """Compact, readable figure: 4 significant digits, scientific outside [1e-3, 1e5); ``-`` for
    None, ``yes``/``no`` for booleans, integers in full, text as printable text."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return printable(x)
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # a numpy or torch scalar
        x = x.item()
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return printable(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"  # -0.0 too
    if not (1e-3 <= abs(x) < 1e5):
        return f"{x:.3e}"
    if abs(float(f"{x:.4g}")) >= 1e4:  # 4 significant digits would switch to e-notation here
        return f"{x:.0f}"
    return f"{x:.4g}"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ", *, mark: Optional[int] = None
) -> str:
    """A plain-text table: text left-aligned, numbers (every non-text cell of a column)
    right-aligned and formatted by :func:`fmt_num`; the row at index ``mark`` starts with ``>``."""
    cells = [[printable(c) if isinstance(c, str) else fmt_num(c) for c in row] for row in rows]
    numeric = [
        all(not isinstance(row[i], str) for row in rows if row[i] is not None) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    marker = ">".ljust(max(len(indent), 2))

    def line(values: Sequence[str], lead: str) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return (lead + "  ".join(parts)).rstrip()

    body = [line(r, marker if k == mark else indent) for k, r in enumerate(cells)]
    return "\n".join([line(list(headers), indent), *body])


def sample_rows(n: int, focus: int, *, keep: int = 7) -> list[int]:
    """At most ``keep`` row indices of ``n`` for a short table: the first, the last, and those
    around ``focus``."""
    if n <= keep:
        return list(range(n))
    around = range(max(0, focus - 2), min(n, focus + 3))
    picked = sorted({0, n - 1, *around})
    return picked[:keep] if focus in picked[:keep] else sorted({0, focus, n - 1})
