"""Compact plain-text tables for assertion messages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fmt", "format_table", "sample_rows"]


def fmt(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != v:
            return "nan"
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.3e}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, mark: int | None = None) -> str:
    """Aligned columns; the row at index ``mark`` is flagged with ``>``."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    for i, r in enumerate(cells):
        lines.append(("> " if i == mark else "  ") + "  ".join(c.rjust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def sample_rows(n: int, focus: int, *, keep: int = 7) -> list[int]:
    """At most ``keep`` row indices: the first, the last, and those around ``focus``."""
    if n <= keep:
        return list(range(n))
    around = range(max(0, focus - 2), min(n, focus + 3))
    picked = sorted({0, n - 1, *around})
    return picked[:keep] if focus in picked[:keep] else sorted({0, focus, n - 1})
