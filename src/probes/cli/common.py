"""Shared pieces of the ``probes`` subcommands that read run logs: arguments, opening, errors.

Text formatting (``printable``, ``fmt_num``, ``table``) is the library's one formatter,
:mod:`probes.console.numbers`, re-exported here.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, TextIO

from probes.console.numbers import fmt_num, printable, table
from probes.runlog import layout as fmt
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
