"""``probes compare RUN RUN RUN ...``: cross-stage transfer, intra-category coherence and
calibration alignment of BenchmarkProbe results across runs (see :mod:`probes.choice.stages`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from probes.cli.common import add_debug_argument

__all__ = ["print_report", "register", "report_tables", "run"]


def register(sub: Any) -> None:
    """Add the ``compare`` parser to ``sub`` (an ``argparse`` subparsers object)."""
    p = sub.add_parser(
        "compare",
        help="correlate benchmark accuracy/confidence across runs between two training stages",
        description=(
            "Each RUN is a run directory (or a directory of per-stage run directories) holding the"
            " BenchmarkProbe sources of two stages. Correlations are across runs (one point per run):"
            " Pearson, Spearman and Kendall with scipy p-values and bootstrap intervals over runs."
        ),
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (at least 3)")
    p.add_argument("--from", dest="source_stage", default="pretrain", help="earlier stage (default: pretrain)")
    p.add_argument("--to", dest="target_stage", default="sft", help="later stage (default: sft)")
    p.add_argument("--name", action="append", default=None, help="display name of each run, in order (repeat)")
    p.add_argument(
        "--metric",
        action="append",
        choices=("accuracy", "confidence", "ece"),
        default=None,
        help="metric to correlate across stages (repeat; default: accuracy and confidence)",
    )
    p.add_argument(
        "--method",
        action="append",
        choices=("pearson", "spearman", "kendall"),
        default=None,
        help="correlation coefficient (repeat; default: all three)",
    )
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the runs (0: none; default 1000)")
    p.add_argument("--ci", type=float, default=0.95, help="bootstrap interval coverage (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the full report as JSON")
    p.add_argument("--quiet", action="store_true", help="no tables (with --json)")
    add_debug_argument(p)
    p.set_defaults(func=run)


def _run_names(paths: Sequence[Path], names: Optional[Sequence[str]]) -> list[str]:
    if names is not None:
        if len(names) != len(paths):
            raise ValueError(f"Got {len(names)} --name values for {len(paths)} runs; give one name per run.")
        if len(set(names)) != len(names):
            raise ValueError(f"Run names must be unique, got {list(names)}.")
        return list(names)
    base = [p.resolve().name or str(p) for p in paths]
    return base if len(set(base)) == len(base) else [str(p) for p in paths]


def run(args: argparse.Namespace) -> int:
    """Handler of ``probes compare``; returns the exit code (0 ok, 2 bad input)."""
    from rich.console import Console

    from probes.choice.stages import load_run_scores, stage_transfer
    from probes.runlog import RunLogError

    console = Console()
    try:
        names = _run_names(args.runs, args.name)
        runs = {}
        for name, path in zip(names, args.runs):
            try:
                runs[name] = load_run_scores(path)
            except (RunLogError, OSError, KeyError, ValueError) as err:
                raise ValueError(f"Run {name!r} ({path}): {err}") from None
        report = stage_transfer(
            runs,
            source_stage=args.source_stage,
            target_stage=args.target_stage,
            metrics=tuple(args.metric or ("accuracy", "confidence")),
            methods=tuple(args.method or ("pearson", "spearman", "kendall")),
            n_boot=args.boot,
            ci=args.ci,
            seed=args.seed,
        )
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, markup=True)
        return 2
    if not args.quiet:
        print_report(report, console=console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, allow_nan=False))
        if not args.quiet:
            console.print(f"wrote {args.json}")
    return 0


def _cell(c: Any) -> str:
    if not c.defined:
        return "[dim]undefined[/dim]"
    p = "" if math.isnan(c.p_value) else f" p={c.p_value:.2g}"
    ci = "" if math.isnan(c.ci_low) else f" [{c.ci_low:+.2f},{c.ci_high:+.2f}]"
    return f"{c.r:+.2f}{p}{ci}"


def _method_columns(table: Any, methods: Sequence[str]) -> None:
    for m in methods:
        table.add_column(m, no_wrap=True)


def report_tables(report: Any) -> list[Any]:
    """Rich tables of a :class:`~probes.choice.stages.TransferReport` (runs, transfer,
    coherence, alignment), plus a table of the reasons of undefined coefficients if any."""
    from rich.table import Table

    methods = list(report.methods)
    reasons: dict[str, None] = {}
    ci = f"{report.ci:.0%} CI over runs" if report.n_boot else "no bootstrap"

    runs = Table(title=f"Runs: mean over {len(report.benchmarks)} benchmarks at the end of each stage")
    for col in ("run", "stage", "step", "accuracy", "confidence", "ece"):
        runs.add_column(col, justify="left" if col in ("run", "stage") else "right")
    for name, stages in report.scores.items():
        for stage, s in stages.items():
            ece = "" if s.ece is None else f"{float(s.ece.mean()):.3f}"
            step = "" if s.step is None else str(s.step)
            runs.add_row(name, stage, step, f"{s.accuracy.mean():.3f}", f"{s.confidence.mean():.3f}", ece)

    def add(table: Any, lead: list[str], corr: dict[str, Any]) -> None:
        for c in corr.values():
            if not c.defined:
                reasons[c.reason] = None
        table.add_row(*lead, *(_cell(corr[m]) for m in methods))

    transfer = Table(
        title=f"Cross-stage transfer {report.source_stage} -> {report.target_stage}:"
        f" r across {len(report.runs)} runs (p, {ci})"
    )
    # names fold onto a second line rather than being cut: cut names can make two rows look the same
    transfer.add_column("metric", overflow="fold")
    transfer.add_column("benchmark / category statistic", overflow="fold")
    _method_columns(transfer, methods)
    from probes.choice.stages import cross_stage_display_rows

    previous = None
    for metric, level, label, row in cross_stage_display_rows(report):
        if previous is not None and metric != previous:
            transfer.add_section()
        previous = metric
        add(transfer, [metric, label if level == "benchmark" else f"[bold]{label}[/bold]"], row.correlations)
    transfer.add_section()

    coherence = Table(title=f"Intra-category coherence: mean pairwise r of benchmarks across runs ({ci})")
    for col in ("stage", "category", "metric", "pairs"):
        coherence.add_column(col, overflow="fold")
    _method_columns(coherence, methods)
    for crow in report.coherence:
        pairs = f"{min(crow.n_pairs_defined.values(), default=0)}/{crow.n_pairs}"
        add(coherence, [crow.stage, crow.category, crow.metric, pairs], crow.coherence)

    alignment = Table(title=f"Calibration alignment: r(confidence, accuracy) across runs (p, {ci})")
    for col in ("stage", "level", "name", "n"):
        alignment.add_column(col, overflow="fold")
    _method_columns(alignment, methods)
    for arow in report.alignment:
        n = next(iter(arow.correlations.values())).n
        add(alignment, [arow.stage, arow.level, arow.name, str(n)], arow.correlations)

    tables = [runs, transfer, coherence, alignment]
    if reasons:
        why = Table(title="Undefined coefficients")
        why.add_column("reason")
        for reason in reasons:
            why.add_row(reason)
        tables.append(why)
    return tables


def print_report(report: Any, *, console: Any = None) -> None:
    """Print :func:`report_tables` to ``console`` (a ``rich.console.Console``; a new one if None)."""
    from rich.console import Console

    console = console or Console()
    for table in report_tables(report):
        console.print(table)
