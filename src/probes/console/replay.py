"""Feeding recorded runs to a :class:`~probes.console.Dashboard`: ``replay`` and ``follow``.

Both take plain records and ``describe`` mappings, so they work with any reader (the run-log
reader, a test's list, a socket).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Optional

from rich import get_console
from rich.console import Console

from probes.console.dashboard import Dashboard
from probes.console.display import LiveDisplay
from probes.core.records import Record

__all__ = ["by_step", "follow", "replay"]

Describes = Mapping[str, Mapping[str, Any]]


def by_step(*streams: Iterable[Record]) -> Iterator[Record]:
    """Merge per-source record streams (each in step order) into one stream in step order.

    Records of equal step keep the order of ``streams``.
    """
    return heapq.merge(*streams, key=lambda r: r.step)


def _is_terminal(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


def _register(dashboard: Dashboard, describes: Describes) -> None:
    if not isinstance(describes, Mapping):
        raise ValueError(
            f"Expected `describes` to map source name -> describe() mapping, got {type(describes).__name__}."
        )
    for source, describe in describes.items():
        dashboard.register_source(source, describe)


def replay(
    records: Iterable[Record],
    describes: Describes,
    *,
    console: Optional[Console] = None,
    speed: float = 20.0,
    dashboard: Optional[Dashboard] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Dashboard:
    """Show a recorded run on the dashboard, one optimizer step after another.

    On a terminal the dashboard is drawn live and advances ``speed`` readings (distinct steps)
    per second; ``math.inf`` jumps to the end. Elsewhere, or at infinite speed, the final dashboard
    is printed once. The header shows the original run's timing when records carry
    ``extra["time"]``.

    Args:
        records: the run's records in step order (merge per-source streams with :func:`by_step`).
        describes: source name -> the probe's ``describe()`` mapping, for every source in ``records``.
        console: where to draw (default: rich's global console).
        speed: readings per second, > 0 (``math.inf``: no pause).
        dashboard: the dashboard to feed (default: a new one titled ``probes replay``).
        sleep: the pause function (tests pass a fake).

    Returns:
        the dashboard, holding the final state.

    Raises:
        ValueError: on a bad ``speed`` or ``describes``; KeyError for a record of a source
            missing from ``describes``.

    Example::

        run = probes.runlog.open_run("runs/demo")
        replay(run.records(), {s: run.describe(s) for s in run.sources()}, speed=50)
    """
    if not (isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed > 0):
        raise ValueError(
            f"Expected `speed` to be a positive number of readings per second (or math.inf), got {speed!r}."
        )
    console = console or get_console()
    dashboard = dashboard or Dashboard(title="probes replay", clock=None)
    _register(dashboard, describes)
    live = _is_terminal(console) and math.isfinite(speed)
    display = LiveDisplay(
        lambda: dashboard, console=console, nested=False, refresh_per_second=min(10.0, max(1.0, speed))
    )
    if live:
        display.start()
    try:
        for _, group in itertools.groupby(records, key=lambda r: r.step):
            for record in group:
                dashboard.write(record)
            if live:
                sleep(1.0 / speed)
        dashboard.flush()
    finally:
        display.stop(leave=True)
    if not live:
        console.print(dashboard)
    return dashboard


def follow(
    poll: Callable[[], tuple[Describes, Iterable[Record]]],
    *,
    console: Optional[Console] = None,
    interval: float = 1.0,
    dashboard: Optional[Dashboard] = None,
    until: Optional[Callable[[], bool]] = None,
    idle_timeout: Optional[float] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Dashboard:
    """Watch a run that is still being written: poll for records and keep the dashboard current.

    ``poll()`` returns the describes known so far and records; records already seen (a step not
    after the last one seen for that source) are skipped, so ``poll`` may return everything each
    time. On a terminal the dashboard is drawn live; elsewhere one summary line is printed per poll
    that brought new records. Stops on Ctrl+C (returning normally), when ``until()`` is true, or
    after ``idle_timeout`` seconds without new records.

    Args:
        poll: returns ``(describes, records)``; called every ``interval`` seconds.
        console: where to draw (default: rich's global console).
        interval: seconds between polls, > 0.
        dashboard: the dashboard to feed (default: a new one titled ``probes watch``).
        until: stop condition checked after each poll.
        idle_timeout: stop after this many seconds without new records (None: never).
        sleep, clock: injectable for tests.

    Returns:
        the dashboard, holding the latest state.

    Raises:
        ValueError: on a bad ``interval`` or ``idle_timeout``.
    """
    if not (isinstance(interval, (int, float)) and not isinstance(interval, bool) and 0 < interval < math.inf):
        raise ValueError(f"Expected `interval` to be a positive number of seconds, got {interval!r}.")
    if idle_timeout is not None and not (isinstance(idle_timeout, (int, float)) and idle_timeout > 0):
        raise ValueError(f"Expected `idle_timeout` to be a positive number of seconds or None, got {idle_timeout!r}.")
    console = console or get_console()
    dashboard = dashboard or Dashboard(title="probes watch", clock=None)
    live = _is_terminal(console)
    display = LiveDisplay(lambda: dashboard, console=console, nested=False, refresh_per_second=4.0)
    last: dict[str, int] = {}
    last_new = clock()
    if live:
        display.start()
    try:
        while True:
            describes, records = poll()
            _register(dashboard, describes)
            n = 0
            for record in records:
                if record.step > last.get(record.source, -1):
                    dashboard.write(record)
                    last[record.source] = record.step
                    n += 1
            if n:
                last_new = clock()
                if not live:
                    console.print(dashboard.summary_line(), soft_wrap=True, highlight=False, markup=False)
            if (until is not None and until()) or (idle_timeout is not None and clock() - last_new >= idle_timeout):
                break
            sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.flush()
        display.stop(leave=True)
    return dashboard
