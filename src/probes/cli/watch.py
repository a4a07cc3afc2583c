"""``probes watch RUN``: follow a run that is still training, from another terminal."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Optional, TextIO

from probes.cli.common import add_run_arguments, open_for_command
from probes.cli.replay import make_renderer, step_groups
from probes.runlog.errors import RunLogError
from probes.runlog.reader import RunReader

__all__ = ["register", "run", "watch"]

FINAL = {"finished": 0, "failed": 1, "interrupted": 1}
#: default seconds between polls: with the writers' default ``flush_every_s=1`` a record shows
#: within about 1 s + one training step + this (``tests/cli/test_watch_latency.py`` measures it)
POLL_S = 0.25


def register(sub: Any) -> None:
    """Add the ``watch`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "watch",
        help="follow a run that is still training",
        description="Print every new record of a run as soon as its shard lands, until the run finishes."
        " Exit code 0 when the run finishes, 1 when it failed or was interrupted, when it cannot be read, or"
        " when --timeout passes without new records.",
    )
    add_run_arguments(p)
    p.add_argument(
        "--interval", type=float, default=POLL_S, metavar="S", help=f"seconds between polls (default {POLL_S})"
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up after S seconds without new records"
    )
    p.add_argument("--from-start", action="store_true", help="print the whole run so far, not only the latest step")
    p.add_argument("--plain", action="store_true", help="text lines instead of the dashboard (default off a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Handle ``probes watch``; returns the exit code (errors go to stderr)."""
    out = out if out is not None else sys.stdout
    if not (args.interval > 0 and math.isfinite(args.interval)):
        print(f"probes watch: error: --interval must be > 0, got {args.interval}", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.timeout > 0:
        print(f"probes watch: error: --timeout must be > 0, got {args.timeout}", file=sys.stderr)
        return 2
    start = time.monotonic()
    if not args.run.exists():
        out.write(f"waiting for {args.run} to appear...\n")
        out.flush()
        while not args.run.exists():
            if args.timeout is not None and time.monotonic() - start > args.timeout:
                print(f"probes watch: error: {args.run} did not appear within {args.timeout} s", file=sys.stderr)
                return 1
            time.sleep(args.interval)
    reader = open_for_command(args, "watch")
    if reader is None:
        return 1
    try:
        return watch(
            reader, out, interval=args.interval, timeout=args.timeout, from_start=args.from_start, plain=args.plain
        )
    except RunLogError as e:
        print(f"probes watch: error: {e}", file=sys.stderr)
        return 1


def _fork_of(reader: RunReader) -> Optional[int]:
    for t in reader.timelines:
        if t["timeline"] == reader.timeline:
            return int(t["fork_step"]) if t["parent"] >= 0 else None
    return None


def watch(
    reader: RunReader,
    out: TextIO,
    *,
    interval: float = POLL_S,
    timeout: Optional[float] = None,
    from_start: bool = False,
    plain: bool = False,
) -> int:
    """Poll ``reader`` and render new records until the viewed timeline reports a final status.

    Returns:
        0 when the run finished, 1 when it failed, was interrupted, or ``timeout`` seconds passed
        without a new record.
    """
    describes = {s: reader.describe(s) for s in reader.sources()}  # updated in place as sources appear
    renderer = make_renderer(describes, out, plain=plain)
    renderer.start(f"watching {reader.path} (status {reader.status}; Ctrl-C to stop)")
    shown: dict[str, int] = {}
    if not from_start:  # begin with the latest step of every source
        for s in reader.sources():
            shown[s] = int(reader.steps(s)[-1]) - 1
    tip = reader.timeline
    last_new = time.monotonic()
    while True:
        if reader.timeline != tip:
            fork = _fork_of(reader)
            if fork is not None:  # a resumed timeline; a fresh run's first timeline is no resume
                renderer.note(f"timeline {reader.timeline} resumed after step {fork}; later records are superseded")
                shown = {s: min(v, fork) for s, v in shown.items()}
            tip = reader.timeline
        new = False
        sources = reader.sources()
        describes.update({s: reader.describe(s) for s in sources if s not in describes})
        if sources:
            floor = -(2**62)
            start = min(shown.get(s, floor) for s in sources) + 1
            records = reader.records(sources, start=start)
            fresh = (r for r in records if r.step > shown.get(r.source, floor))
            for step, group in step_groups(fresh):
                renderer.update(step, group)
                for r in group:
                    shown[r.source] = r.step
                new = True
        if new:
            last_new = time.monotonic()
        if reader.status in FINAL:
            renderer.close(f"run {reader.status} at step {reader.last_step()}")
            return FINAL[reader.status]
        if timeout is not None and time.monotonic() - last_new > timeout:
            renderer.close(f"no new records for {timeout} s (status {reader.status}); giving up")
            return 1
        time.sleep(interval)
        reader.refresh()
