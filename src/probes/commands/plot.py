"""``probes plot RUN -o FILE.png``: keyword curves, the priming scatter and the format distribution.

Needs matplotlib (``pip install 'probes[plot]'``). One panel per source of a known probe type,
top to bottom in the log's source order; sources of other types are skipped:

* ``KeywordProbe``: P(first keyword token) per pair over steps, log scale (the pairs that moved
  most when there are more than ``--max-pairs``);
* ``PrimingProbe``: log10 P_before against log10 S_prime at the last record with baselines,
  surprising samples highlighted, with the threshold (``describe()["threshold"]``, 1e-3 by default)
  as a vertical line;
* ``FormatProbe``: the format distribution as a stacked area over steps, the collapse step marked.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TextIO

import numpy as np

from probes.runlog.cli_support import add_run_arguments, open_for_command, printable
from probes.runlog.labels import format_names, kind_of, pair_names, sample_names
from probes.runlog.reader import RunReader
from probes.runlog.summary import collapse_events

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PANEL_HEIGHT", "build_figure", "register", "run"]

PANEL_HEIGHT = 3.2  # inches per panel
INSTALL_HINT = "pip install 'probes[plot]'"


def register(sub: Any) -> None:
    """Add the ``plot`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "plot",
        help="draw keyword curves, the priming scatter and the format distribution to a PNG",
        description="Draw one panel per keyword, priming and format source of a run log into an image"
        f" (needs matplotlib: {INSTALL_HINT}). Exit code 0; 1 when the run cannot be read or has nothing to"
        " plot; 2 when matplotlib is missing.",
    )
    add_run_arguments(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="image to write (.png, .svg, .pdf)")
    p.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    p.add_argument("--width", type=float, default=10.0, metavar="IN", help="figure width in inches (default 10)")
    p.add_argument("--max-pairs", type=int, default=12, metavar="N", help="keyword curves per panel (default 12)")
    p.add_argument("--source", action="append", default=None, metavar="NAME", help="only this source (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Handle ``probes plot``; returns the exit code (errors go to stderr)."""
    out = out if out is not None else sys.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"probes plot: error: plotting needs matplotlib, which is not installed. Install it with: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    for name, value in (("--dpi", args.dpi), ("--max-pairs", args.max_pairs)):
        if value < 1:
            print(f"probes plot: error: {name} must be a positive integer, got {value}", file=sys.stderr)
            return 2
    if not args.width > 0:
        print(f"probes plot: error: --width must be > 0, got {args.width}", file=sys.stderr)
        return 2
    reader = open_for_command(args, "plot")
    if reader is None:
        return 1
    fig = build_figure(reader, sources=args.source, max_pairs=args.max_pairs, width=args.width)
    if fig is None:
        print(
            f"probes plot: error: nothing to plot in {args.run}: no keyword, priming or format source"
            f" (it has {reader.sources()})",
            file=sys.stderr,
        )
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=args.dpi)
    out.write(f"wrote {args.output} ({len(fig.axes)} panels)\n")
    return 0


def build_figure(
    reader: RunReader, *, sources: Optional[list[str]] = None, max_pairs: int = 12, width: float = 10.0
) -> Optional[Figure]:
    """A matplotlib Figure (no pyplot state) with one panel per plottable source, or None."""
    from matplotlib.figure import Figure

    chosen = [s for s in (sources or reader.sources()) if s in reader.sources()]
    panels = [(s, kind_of(reader.describe(s))) for s in chosen]
    panels = [(s, k) for s, k in panels if k in ("keyword", "priming", "format") and _plottable(reader, s, k)]
    if not panels:
        return None
    fig = Figure(figsize=(width, PANEL_HEIGHT * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (source, kind) in zip(axes, panels):
        {"keyword": _keyword_panel, "priming": _priming_panel, "format": _format_panel}[kind](
            ax, reader, source, max_pairs
        )
    return fig


def _plottable(reader: RunReader, source: str, kind: str) -> bool:
    need = {"keyword": "p_first", "priming": "log10_s_prime", "format": "dist"}[kind]
    return f"{source}/{need}" in reader.metrics(f"{source}/")


def _keyword_panel(ax: Axes, reader: RunReader, source: str, max_pairs: int) -> None:
    steps, p = reader.read(f"{source}/p_first")
    p = p.astype(np.float64)
    names = [printable(n) for n in pair_names(reader.describe(source)) or []]
    if len(names) != p.shape[1]:
        names = [str(i) for i in range(p.shape[1])]
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.abs(np.log10(p[-1]) - np.log10(p[0]))
    order = np.argsort(-np.nan_to_num(moved, nan=-1.0), kind="stable")[:max_pairs]
    for j in sorted(order.tolist()):
        ax.plot(steps, p[:, j], label=names[j], linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("P(first keyword token)")
    shown = f" ({len(order)} of {p.shape[1]} pairs that moved most)" if len(order) < p.shape[1] else ""
    ax.set_title(f"{printable(source)}: keyword probabilities{shown}")
    if len(order) <= 12:
        ax.legend(fontsize="x-small", ncols=2 if len(order) > 6 else 1, loc="best")
    ax.grid(True, which="major", alpha=0.3)


def _priming_panel(ax: Axes, reader: RunReader, source: str, max_pairs: int) -> None:
    describe = reader.describe(source)
    threshold = describe.get("threshold", 1e-3)
    threshold = float(threshold) if isinstance(threshold, (int, float)) and 0 < threshold < 1 else 1e-3
    have = set(reader.metrics(f"{source}/"))
    steps, s_prime = reader.read(f"{source}/log10_s_prime")
    if f"{source}/p_before" in have:
        p_before = reader.read(f"{source}/p_before")[1].astype(np.float64)
    else:
        p_before = np.full(s_prime.shape, np.nan)
    with_base = np.isfinite(p_before).any(axis=1)
    names = sample_names(describe) or []
    ax.set_xlabel("log10 P_before (keyword probability before learning)")
    ax.set_ylabel("log10 S_prime")
    ax.axvline(math.log10(threshold), color="0.3", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    if not with_base.any():
        ax.set_title(f"{printable(source)}: priming (no baselines recorded yet)")
        ax.legend(fontsize="x-small")
        return
    k = int(np.nonzero(with_base)[0][-1])
    x = np.log10(p_before[k])
    y = s_prime[k].astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    surprising = x < math.log10(threshold)
    ax.scatter(x[ok & surprising], y[ok & surprising], color="tab:red", label="surprising", zorder=3)
    ax.scatter(x[ok & ~surprising], y[ok & ~surprising], color="tab:blue", label="not surprising", zorder=3)
    if len(names) == len(x) and len(names) <= 20:
        for i in np.nonzero(ok)[0]:
            label = printable(names[i])
            ax.annotate(label, (x[i], y[i]), fontsize="xx-small", xytext=(3, 3), textcoords="offset points")
    ax.set_title(f"{printable(source)}: priming spread vs probability before learning, step {int(steps[k])}")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(True, alpha=0.3)


def _format_panel(ax: Axes, reader: RunReader, source: str, max_pairs: int) -> None:
    steps, dist = reader.read(f"{source}/dist")
    dist = np.nan_to_num(dist.astype(np.float64))
    names = [printable(n) for n in format_names(reader.describe(source)) or []]
    if len(names) != dist.shape[1]:
        names = [str(i) for i in range(dist.shape[1])]
    ax.stackplot(steps, dist.T, labels=names, alpha=0.85)
    ax.set_ylim(0, 1)
    ax.set_xlim(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share of outputs")
    title = f"{printable(source)}: format distribution"
    if f"{source}/collapsed" in reader.metrics(f"{source}/"):
        events = [s for s, what in collapse_events(steps, reader.read(f"{source}/collapsed")[1]) if what == "collapsed"]
        if events:
            ax.axvline(events[0], color="black", linestyle="--", linewidth=1.5, label=f"collapse at step {events[0]}")
            title += f" (collapse at step {events[0]})"
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
