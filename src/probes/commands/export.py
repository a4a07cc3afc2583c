"""``probes export RUN --csv DIR``: one CSV file per source, one row per step."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import numpy as np

from probes.runlog.cli_support import add_run_arguments, error_line, open_for_command, printable, select_sources
from probes.runlog.errors import RunLogError
from probes.runlog.labels import element_labels, safe_file_stem
from probes.runlog.reader import RunReader

__all__ = ["export_csv", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``export`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "export",
        help="write a run log as CSV",
        description="Write DIR/<source>.csv for every source (characters other than letters, digits and ._-"
        " in a source name become _ in the file name): columns step, epoch, time, then one column per"
        " metric element, named metric[label] after the probe's pairs, samples or formats. Floats are written"
        " with the shortest text that reads back to the identical value. Exit code 0, or 1 when the run cannot"
        " be read.",
    )
    add_run_arguments(p)
    p.add_argument("--csv", type=Path, required=True, metavar="DIR", help="directory for the CSV files")
    p.add_argument("--source", action="append", default=None, metavar="NAME", help="only this source (repeatable)")
    p.add_argument("--prefix", default="", metavar="P", help="only metrics whose 'source/name' starts with P")
    p.add_argument("--start", type=int, default=None, metavar="STEP", help="first step")
    p.add_argument("--stop", type=int, default=None, metavar="STEP", help="stop before this step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Handle ``probes export``; returns the exit code (errors go to stderr)."""
    out = out if out is not None else sys.stdout
    reader = open_for_command(args, "export")
    if reader is None:
        return 1
    sources = select_sources(args, reader, "export")
    if sources is None:
        return 1
    if args.csv.exists() and not args.csv.is_dir():
        print(printable(f"probes export: error: --csv {args.csv} exists and is not a directory"), file=sys.stderr)
        return 1
    try:
        args.csv.mkdir(parents=True, exist_ok=True)
        written = 0
        taken: set[str] = set()
        for source in sources:
            path = args.csv / f"{safe_file_stem(source, taken)}.csv"
            n_rows, n_cols = export_csv(reader, source, path, prefix=args.prefix, start=args.start, stop=args.stop)
            if n_cols is not None:
                out.write(printable(f"wrote {path}: {n_rows} rows x {n_cols} columns") + "\n")
                written += 1
    except (RunLogError, ValueError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        print(error_line("export", e), file=sys.stderr)
        return 1
    if not written:
        print(
            printable(f"probes export: error: nothing matched in {args.run} (sources {reader.sources()})"),
            file=sys.stderr,
        )
        return 1
    return 0


def export_csv(
    reader: RunReader,
    source: str,
    path: Path,
    *,
    prefix: str = "",
    start: Optional[int] = None,
    stop: Optional[int] = None,
) -> tuple[int, Optional[int]]:
    """Write one source as CSV; returns ``(rows, columns)``, columns None when no metric matched.

    Column names escape unprintable characters (see :func:`probes.runlog.cli_support.printable`).
    """
    names = [n for n in reader.metrics(f"{source}/") if n.startswith(prefix)]
    if not names:
        return 0, None
    describe = reader.describe(source)
    steps = None
    header = ["step", "epoch", "time"]
    columns: list[np.ndarray] = []
    for name in names:
        s, values = reader.read(name, start=start, stop=stop)
        steps = s
        metric = name.split("/", 1)[1]
        labels = element_labels(describe, values.shape[1:])
        header += [printable(metric if lab == "" else f"{metric}[{lab}]") for lab in labels]
        flat = values.reshape(len(values), -1)
        columns.append(_text(flat))
    assert steps is not None
    i0 = int(np.searchsorted(reader.steps(source), steps[0])) if len(steps) else 0
    epochs = reader.epochs(source)[i0 : i0 + len(steps)]
    times = reader.times(source)[i0 : i0 + len(steps)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for k in range(len(steps)):
            row = [str(int(steps[k])), str(int(epochs[k])), repr(float(times[k]))]
            for col in columns:
                row.extend(col[k])
            w.writerow(row)
    return len(steps), len(header)


def _text(flat: np.ndarray) -> list[list[str]]:
    if flat.dtype.kind == "f":
        # str() of a numpy float is the shortest text that parses back to the same value of that dtype
        return [[str(x) for x in row] for row in flat]
    if flat.dtype == np.bool_:
        return [["True" if x else "False" for x in row] for row in flat.tolist()]
    return [[str(x) for x in row] for row in flat.tolist()]
