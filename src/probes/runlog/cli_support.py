"""Shared pieces of the ``probes`` subcommands that read run logs: arguments, opening, text tables."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

from probes.runlog import format as fmt
from probes.runlog.errors import RunLogError, RunLogWarning
from probes.runlog.reader import RunReader, open_run

__all__ = [
    "add_debug_argument",
    "add_run_arguments",
    "error_line",
    "fmt_num",
    "open_for_command",
    "printable",
    "select_sources",
    "strict_json",
    "table",
]

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


def strict_json(value: Any) -> Any:
    """``value`` made strict-JSON-safe: non-finite floats become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (the tokens Python's json module would have written)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def error_line(command: str, error: BaseException) -> str:
    """One line for an error: ``probes COMMAND: error: message`` (unprintables escaped)."""
    message = str(error) or type(error).__name__
    if not isinstance(error, (RunLogError, ValueError, OSError)):
        message = f"{type(error).__name__}: {message}"
    return f"probes {command}: error: {printable(message)}"


def add_debug_argument(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    """``--debug``: show the traceback of an error instead of one line."""
    parser.add_argument(
        "--debug", action="store_true", default=default, help="print the traceback of an error (for bug reports)"
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``RUN``, ``--lenient``, ``--timeline``, ``--max-header-mib`` and ``--debug``, common to every
    reading subcommand."""
    parser.add_argument("run", metavar="RUN", type=Path, help="run directory written by RunLog / RunWriter")
    parser.add_argument("--lenient", action="store_true", help="skip corrupt shards with a warning instead of failing")
    parser.add_argument(
        "--timeline",
        type=int,
        default=None,
        metavar="N",
        help="view the lineage of timeline N (default: the newest), e.g. an abandoned branch",
    )
    parser.add_argument(
        "--max-header-mib",
        type=float,
        default=None,
        metavar="N",
        help=f"largest shard header to accept, in MiB (default {fmt.MAX_HEADER_BYTES // 2**20}, what writers"
        " write under unless told otherwise)",
    )
    add_debug_argument(parser)


def open_for_command(args: argparse.Namespace, command: str, err: Optional[TextIO] = None) -> Optional[RunReader]:
    """Open ``args.run``; on failure print ``probes COMMAND: error: ...`` (to stderr) and return None."""
    err = err if err is not None else sys.stderr
    cap = getattr(args, "max_header_mib", None)
    if cap is not None and not (math.isfinite(cap) and 1 / 1024 <= cap <= 2**20):
        print(f"probes {command}: error: --max-header-mib must be in [1/1024, 1048576], got {cap}", file=err)
        return None
    max_header = fmt.MAX_HEADER_BYTES if cap is None else int(cap * 2**20)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RunLogWarning)
            run = open_run(args.run, strict=not args.lenient, timeline=args.timeline, max_header_bytes=max_header)
        for w in caught:
            print(f"probes {command}: warning: {printable(w.message)}", file=err)
        return run
    except (RunLogError, ValueError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        print(error_line(command, e), file=err)
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
        print(
            printable(f"probes {command}: error: no source {unknown[0]!r} in {args.run}; it has {available}"), file=err
        )
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
    if x == 0:
        return "0"  # -0.0 too
    if not (1e-3 <= abs(x) < 1e5):
        return f"{x:.3e}"
    if abs(float(f"{x:.4g}")) >= 1e4:  # 4 significant digits would switch to e-notation here
        return f"{x:.0f}"
    return f"{x:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A plain-text table with left-aligned text and right-aligned numbers."""
    cells = [[printable(c) if isinstance(c, str) else fmt_num(c) for c in row] for row in rows]
    numeric = [
        all(not isinstance(row[i], str) for row in rows if row[i] is not None) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in cells])
