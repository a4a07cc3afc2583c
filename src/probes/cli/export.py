"""``probes export RUN --csv DIR``: one CSV file per source, one row per step; ``--tensorboard DIR``:
TensorBoard event files, one scalar tag per metric element."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import numpy as np

from probes.cli.common import add_run_arguments, error_line, open_for_command, printable, select_sources
from probes.runlog.errors import RunLogError
from probes.runlog.labels import element_labels, safe_file_stem
from probes.runlog.reader import RunReader

__all__ = ["export_csv", "export_tensorboard", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``export`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "export",
        help="write a run log as CSV or TensorBoard event files",
        description="Write DIR/<source>.csv for every source (characters other than letters, digits and ._-"
        " in a source name become _ in the file name): columns step, epoch, time, then one column per"
        " metric element, named metric[label] after the probe's pairs, samples or formats. Floats are written"
        " with the shortest text that reads back to the identical value. Exit code 0, or 1 when the run cannot"
        " be read.",
    )
    add_run_arguments(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--csv", type=Path, metavar="DIR", help="directory for the CSV files")
    where.add_argument(
        "--tensorboard", type=Path, metavar="DIR",
        help="write TensorBoard event files instead: one scalar tag per element, source/metric/label"
        " (needs the tensorboard package)",
    )
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
    if args.tensorboard is None and args.csv.exists() and not args.csv.is_dir():
        print(printable(f"probes export: error: --csv {args.csv} exists and is not a directory"), file=sys.stderr)
        return 1
    try:
        if args.tensorboard is not None:
            written = export_tensorboard(
                reader, args.tensorboard, sources, prefix=args.prefix, start=args.start, stop=args.stop
            )
            if written:
                out.write(printable(f"wrote {written} scalar tags to {args.tensorboard}") + "\n")
        else:
            written = _export_csv_files(args, reader, sources, out)
    except ImportError as e:  # --tensorboard without the tensorboard package
        print(f"probes export: error: {e}", file=sys.stderr)
        return 1
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


def _export_csv_files(args: argparse.Namespace, reader: RunReader, sources: list[str], out: TextIO) -> int:
    """One CSV file per source under ``args.csv``; returns how many were written."""
    args.csv.mkdir(parents=True, exist_ok=True)
    written = 0
    taken: set[str] = set()
    for source in sources:
        path = args.csv / f"{safe_file_stem(source, taken)}.csv"
        n_rows, n_cols = export_csv(reader, source, path, prefix=args.prefix, start=args.start, stop=args.stop)
        if n_cols is not None:
            out.write(printable(f"wrote {path}: {n_rows} rows x {n_cols} columns") + "\n")
            written += 1
    return written


def export_tensorboard(
    reader: RunReader,
    logdir: Path,
    sources: list[str],
    *,
    prefix: str = "",
    start: Optional[int] = None,
    stop: Optional[int] = None,
) -> int:
    """Write the sources as TensorBoard scalars, one tag per metric element
    (``source/metric/label``; ``source/metric`` for a scalar metric), at the recorded steps and
    wall times. Returns the number of tags written.

    Raises:
        ImportError: the tensorboard package is missing (the message says how to install it).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    tags = 0
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for source in sources:
            times_all = dict(zip(reader.steps(source).tolist(), reader.times(source).tolist()))
            for name in (n for n in reader.metrics(f"{source}/") if n.startswith(prefix)):
                steps, cols = reader.read_labelled(name, start=start, stop=stop)
                if not cols or next(iter(cols.values())).dtype.kind not in "biuf":
                    continue
                for label, values in cols.items():
                    tag = name if label == "" else f"{name}/{label.replace('/', '_')}"
                    for step, value in zip(steps.tolist(), values.astype(np.float64).tolist()):
                        writer.add_scalar(tag, value, global_step=step, walltime=times_all.get(step))
                    tags += 1
    finally:
        writer.close()
    return tags


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

    Column names escape unprintable characters (see :func:`probes.cli.common.printable`).
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
        labels = element_labels(describe, values.shape[1:], metric=metric)
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
