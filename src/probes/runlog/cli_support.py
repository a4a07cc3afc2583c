"""Shared pieces of the ``probes`` subcommands that read run logs: arguments, opening, text tables."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

from probes.runlog.errors import RunLogError, RunLogWarning
from probes.runlog.reader import RunReader, open_run

__all__ = ["add_run_arguments", "fmt_num", "open_for_command", "select_sources", "table"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``RUN``, ``--lenient`` and ``--timeline``, common to every reading subcommand."""
    parser.add_argument("run", metavar="RUN", type=Path, help="run directory written by RunLog / RunWriter")
    parser.add_argument("--lenient", action="store_true", help="skip corrupt shards with a warning instead of failing")
    parser.add_argument(
        "--timeline",
        type=int,
        default=None,
        metavar="N",
        help="view the lineage of timeline N (default: the newest), e.g. an abandoned branch",
    )


def open_for_command(args: argparse.Namespace, command: str, err: Optional[TextIO] = None) -> Optional[RunReader]:
    """Open ``args.run``; on failure print ``probes COMMAND: error: ...`` (to stderr) and return None."""
    err = err if err is not None else sys.stderr
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RunLogWarning)
            run = open_run(args.run, strict=not args.lenient, timeline=args.timeline)
        for w in caught:
            print(f"probes {command}: warning: {w.message}", file=err)
        return run
    except (RunLogError, ValueError, OSError) as e:
        print(f"probes {command}: error: {e}", file=err)
        return None


def select_sources(
    args: argparse.Namespace, reader: RunReader, command: str, err: Optional[TextIO] = None
) -> Optional[list[str]]:
    """The sources named by ``--source`` (default: all); on an unknown one print
    ``probes COMMAND: error: ...`` naming what the run has, and return None."""
    err = err if err is not None else sys.stderr
    available = reader.sources()
    sources = list(args.source or available)
    unknown = [s for s in sources if s not in available]
    if unknown:
        print(f"probes {command}: error: no source {unknown[0]!r} in {args.run}; it has {available}", file=err)
        return None
    return sources


def fmt_num(x: Any) -> str:
    """Compact, readable number: 4 significant digits, scientific outside [1e-3, 1e5)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and not (1e-3 <= abs(x) < 1e5):
        return f"{x:.3e}"
    return f"{x:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A plain-text table with left-aligned text and right-aligned numbers."""
    cells = [[c if isinstance(c, str) else fmt_num(c) for c in row] for row in rows]
    numeric = [
        all(not isinstance(row[i], str) for row in rows if row[i] is not None) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in cells])
