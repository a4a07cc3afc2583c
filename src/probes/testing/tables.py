"""Compact plain-text tables for assertion messages: the library's one formatter
(:mod:`probes.console.numbers`) under the names this module always had."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from probes.console.numbers import fmt_num, sample_rows, table

__all__ = ["fmt", "format_table", "sample_rows"]

fmt = fmt_num


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, mark: Optional[int] = None) -> str:
    """Aligned columns (numbers right, text left); the row at index ``mark`` is flagged with ``>``."""
    return table(headers, rows, mark=mark)
