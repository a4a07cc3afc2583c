"""``probes replay RUN``: play a run log back step by step, at the pace it was recorded (or faster).

Rendering is isolated in :func:`make_renderer`, which returns a :class:`PlainRenderer` (one text
line per record); a richer renderer (the live dashboard) only has to offer the same three methods.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional, Protocol, TextIO

import numpy as np

from probes.cli.common import add_run_arguments, fmt_num, open_for_command, printable, select_sources
from probes.core import kinds
from probes.core.records import Record

__all__ = [
    "DashboardRenderer",
    "PlainRenderer",
    "Renderer",
    "generic_line",
    "make_renderer",
    "register",
    "render_record",
    "run",
    "step_groups",
]


class Renderer(Protocol):
    """What replay and watch drive: ``start`` once, ``update`` per step, ``note`` for an event, ``close`` at
    the end."""

    def start(self, title: str) -> None: ...

    def update(self, step: int, records: list[Record]) -> None: ...

    def close(self, message: str) -> None: ...

    def note(self, message: str) -> None: ...


class PlainRenderer:
    """One line per record, e.g. ``step     12  keyword  mean log10 p_first -3.214 ...``: the replay
    line of the record's probe kind.

    Args:
        describes: source -> ``describe()`` of its probe (picks its kind and names its elements);
            kept by reference, so a caller may add sources that appear later.
        out: where to write; flushed after every step so piping to ``tee`` or a file works live.
    """

    def __init__(self, describes: Mapping[str, Mapping[str, Any]], out: Optional[TextIO] = None) -> None:
        self.describes = describes
        self.out = out if out is not None else sys.stdout
        self.width = max((len(printable(s)) for s in describes), default=6)

    def start(self, title: str) -> None:
        self.out.write(printable(title) + "\n")
        self.out.flush()

    def update(self, step: int, records: list[Record]) -> None:
        for r in records:
            line = render_record(r, self.describes.get(r.source, {}))
            self.out.write(f"step {step:>6}  {printable(r.source):<{self.width}}  {printable(line)}\n")
        self.out.flush()

    def close(self, message: str) -> None:
        self.out.write(printable(message) + "\n")
        self.out.flush()

    def note(self, message: str) -> None:
        self.out.write(f"-- {printable(message)} --\n")
        self.out.flush()


class DashboardRenderer:
    """Draws the live dashboard (the same one training shows) and advances it step by step.

    Args:
        describes: source -> ``describe()`` of its probe.
        out: the terminal stream to draw on.
    """

    def __init__(self, describes: Mapping[str, Mapping[str, Any]], out: TextIO) -> None:
        from rich.console import Console

        from probes.console import Dashboard, LiveDisplay

        self.console = Console(file=out)
        self.dashboard = Dashboard(title="probes replay", clock=None)
        self.describes = describes  # by reference: `watch` adds sources that appear later
        self._registered: set[str] = set()
        self.display = LiveDisplay(lambda: self.dashboard, console=self.console, nested=False)

    def start(self, title: str) -> None:
        self.dashboard.note = title
        self.display.start()

    def update(self, step: int, records: list[Record]) -> None:
        for r in records:
            if r.source not in self._registered:
                self.dashboard.register_source(r.source, self.describes.get(r.source, {}))
                self._registered.add(r.source)
            self.dashboard.write(r)

    def close(self, message: str) -> None:
        self.dashboard.flush()
        self.display.stop(leave=True)
        self.console.print(message)

    def note(self, message: str) -> None:
        self.dashboard.note = message  # shown inside the display, not printed across it


def make_renderer(
    describes: Mapping[str, Mapping[str, Any]], out: Optional[TextIO] = None, *, plain: bool = False
) -> Renderer:
    """The live dashboard on a terminal; plain text lines for pipes, files, or ``plain=True``."""
    stream = out if out is not None else sys.stdout
    if not plain and stream.isatty():
        return DashboardRenderer(describes, stream)
    return PlainRenderer(describes, stream)


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.dtype.is_floating_point else t.detach().cpu().numpy()


def _mean(a: np.ndarray) -> float:
    a = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return float(a.mean()) if a.size else math.nan


def generic_line(tensors: Mapping[str, np.ndarray]) -> str:
    """The line of a record whose kind declares none: its first five metrics (the value of a
    scalar, the mean of the finite elements of a vector)."""
    parts: list[str] = []
    for k, v in list(tensors.items())[:5]:
        value = v.item() if v.size == 1 else _mean(v.astype(np.float64))
        parts.append(f"{printable(k)} {fmt_num(value)}" if v.size == 1 else f"{printable(k)} mean {fmt_num(value)}")
    return "  ".join(parts)


def render_record(record: Record, describe: Mapping[str, Any]) -> str:
    """One line of text for a record: the replay line its probe kind declares
    (``describe()["type"]``, see :mod:`probes.core.kinds`), else :func:`generic_line`."""
    t = {k: _np(v) for k, v in record.tensors.items()}
    replay = kinds.of(describe).replay
    line = replay(t, describe) if replay is not None else None
    return line if line is not None else generic_line(t)


def step_groups(records: Iterable[Record]) -> Iterator[tuple[int, list[Record]]]:
    """Consecutive records of the same step, as ``(step, records)`` (input sorted by step)."""
    step, group = None, []
    for r in records:
        if r.step != step and group:
            yield step, group  # type: ignore[misc]
            group = []
        step = r.step
        group.append(r)
    if group:
        yield step, group  # type: ignore[misc]


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "replay",
        help="play a run log back step by step",
        description="Re-render a run from its log, one step at a time, pacing steps by the wall-clock time"
        " at which they were recorded divided by --speed. Exit code 0, or 1 when the run cannot be read.",
    )
    add_run_arguments(p)
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="X times faster than recorded; 0: no pauses")
    p.add_argument(
        "--max-pause", type=float, default=1.0, metavar="S", help="longest pause between two steps, seconds (default 1)"
    )
    p.add_argument("--source", action="append", default=None, metavar="NAME", help="only this source (repeatable)")
    p.add_argument("--start", type=int, default=None, metavar="STEP", help="first step to show")
    p.add_argument("--stop", type=int, default=None, metavar="STEP", help="stop before this step")
    p.add_argument("--every", type=int, default=1, metavar="N", help="show every N-th step (and the last)")
    p.add_argument("--plain", action="store_true", help="text lines instead of the dashboard (default off a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Handle ``probes replay``; returns the exit code (errors go to stderr)."""
    out = out if out is not None else sys.stdout
    for name in ("speed", "max_pause"):
        value = getattr(args, name)
        if not (value >= 0 and math.isfinite(value)):
            print(f"probes replay: error: --{name.replace('_', '-')} must be >= 0, got {value}", file=sys.stderr)
            return 2
    if args.every < 1:
        print(f"probes replay: error: --every must be a positive integer, got {args.every}", file=sys.stderr)
        return 2
    reader = open_for_command(args, "replay")
    if reader is None:
        return 1
    sources = select_sources(args, reader, "replay")
    if sources is None:
        return 1
    if not sources:
        print(f"probes replay: error: {args.run} holds no records", file=sys.stderr)
        return 1
    if args.start is not None or args.stop is not None:
        steps = sorted({int(t) for s in sources for t in reader.steps(s).tolist()})
        lo = args.start if args.start is not None else steps[0]
        hi = args.stop if args.stop is not None else steps[-1] + 1  # --stop is exclusive
        if not any(lo <= t < hi for t in steps):
            where = (
                f"from step {lo} on" if args.stop is None
                else f"before step {hi}" if args.start is None
                else f"in steps [{lo}, {hi})"
            )
            print(
                f"probes replay: error: no records {where}; {args.run} has steps {steps[0]}..{steps[-1]}"
                f" ({len(steps)} readings)",
                file=sys.stderr,
            )
            return 1
    times = {s: dict(zip(reader.steps(s).tolist(), reader.times(s).tolist())) for s in sources}
    renderer = make_renderer({s: reader.describe(s) for s in sources}, out, plain=args.plain)
    renderer.start(f"replaying {args.run} ({', '.join(sources)}), status {reader.status}")
    groups = list(step_groups(reader.records(sources, start=args.start, stop=args.stop)))
    prev_t = None
    shown = 0
    for k, (step, records) in enumerate(groups):
        if k % args.every and k != len(groups) - 1:
            continue
        t = min(times[r.source][step] for r in records)
        if args.speed > 0 and prev_t is not None:
            gap = (t - prev_t) / args.speed
            time.sleep(min(args.max_pause, gap) if gap > 0 and math.isfinite(gap) else 0.0)
        prev_t = t
        renderer.update(step, records)
        shown += 1
    renderer.close(f"replayed {shown} steps")
    return 0
