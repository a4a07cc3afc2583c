"""``probes plot RUN -o FILE.png``: one panel per source, drawn by its probe kind.

Needs matplotlib (``pip install 'probes[plot]'``). One panel per source whose probe kind
(:mod:`probes.core.kinds`) declares a plot and whose log holds the metrics it needs, top to bottom
in the log's source order; other sources are skipped. The built-in kinds draw keyword curves
(P(keyword) per pair, chained, the pairs that moved most), the priming scatter (log10 P_before
against log10 S_prime, the threshold marked), the format distribution (stacked, the collapse
marked), accuracy per benchmark against chance, and IFD per sample with the line IFD = 1.
``--max-pairs`` caps the curves of one panel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TextIO

from probes.cli.common import add_run_arguments, open_for_command
from probes.core import kinds
from probes.runlog.reader import RunReader

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PANEL_HEIGHT", "build_figure", "register", "run"]

PANEL_HEIGHT = 3.2  # inches per panel
INSTALL_HINT = "pip install 'probes[plot]'"


def register(sub: Any) -> None:
    """Add the ``plot`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "plot",
        help="draw one panel per source (keyword curves, priming scatter, formats, benchmarks, IFD) to a PNG",
        description="Draw one panel per source of a run log whose probe kind has a plot into an image"
        f" (needs matplotlib: {INSTALL_HINT}). Exit code 0; 1 when the run cannot be read or has nothing to"
        " plot; 2 when matplotlib is missing.",
    )
    add_run_arguments(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="image to write (.png, .svg, .pdf)")
    p.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    p.add_argument("--width", type=float, default=10.0, metavar="IN", help="figure width in inches (default 10)")
    p.add_argument(
        "--max-pairs", type=int, default=12, metavar="N", help="curves per panel: pairs, benchmarks... (default 12)"
    )
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
            f"probes plot: error: nothing to plot in {args.run}: no source of a probe kind with a plot"
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
    """A matplotlib Figure (no pyplot state) with one panel per plottable source, or None.

    A source is plottable when its probe kind declares a plot and the log holds every metric the
    plot needs; ``max_pairs`` caps the curves of one panel."""
    from matplotlib.figure import Figure

    chosen = [s for s in (sources or reader.sources()) if s in reader.sources()]
    panels = [(s, kinds.of(reader.describe(s))) for s in chosen]
    panels = [(s, k) for s, k in panels if k.plot is not None and _has(reader, s, k.plot_needs)]
    if not panels:
        return None
    fig = Figure(figsize=(width, PANEL_HEIGHT * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (source, kind) in zip(axes, panels):
        kind.plot(ax, reader, source, max_pairs)  # type: ignore[misc]  # filtered above
    return fig


def _has(reader: RunReader, source: str, needs: tuple[str, ...]) -> bool:
    have = reader.metrics(f"{source}/")
    return all(f"{source}/{m}" in have for m in needs)
