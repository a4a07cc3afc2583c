"""The :class:`Dashboard`: a record sink that renders the latest state of every probe.

The same object backs the live training console, ``probes replay`` and ``probes watch``. Writing a
record only stages it (see :mod:`probes.console.host`); records are ingested in bulk when the
dashboard is drawn, so the training thread never waits for the device or for drawing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal, Optional

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table

from probes.console.host import StagedRecord, stage
from probes.console.panels import Alert, AlertsPanel, RunHeader
from probes.console.plain import summary_line
from probes.console.states import DashboardOptions, NewAlert, OtherState, SourceState, state_for
from probes.core import kinds
from probes.core.records import Record

__all__ = ["Dashboard"]

AlertLevel = Literal["error", "warning", "info"]
_LEVELS = ("error", "warning", "info")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an int >= {minimum}, got {value!r}.")
    return value


class Dashboard:
    """Live view of probe records: run header, one panel per source, and alerts.

    A :class:`~probes.core.records.RecordSink`. Each source's panel is the one its probe kind
    declares (:mod:`probes.core.kinds`: keyword, priming, format, benchmark, IFD...); panels appear
    once their source has data; sources of a kind without a panel are counted but not drawn.
    Host-side state stays small: the latest reading, the first one (the baseline) and a bounded
    history per source.

    Args:
        title: first word of the header.
        top_n: keyword pairs shown (largest change first).
        max_rows: rows of the other panels (priming samples, formats, benchmarks, IFD samples).
        history: points kept per series for sparklines (the whole run, decimated).
        keyword_metric: ``"p_seq"`` (chained probability of all keyword tokens) or ``"p_first"``.
        surprise_threshold: threshold of the priming surprise flag when the probe does not give one.
        max_alerts: alert lines shown.
        max_pending: staged records kept before they are ingested without waiting for a draw.
        wide_at: console width from which panels are laid out in two columns.
        clock: seconds, monotonic, for elapsed time and steps per second; injectable for tests.
            None shows no timing unless records carry ``extra["time"]`` (seconds), which always
            takes precedence (a replayed log shows the original run's timing).
        note: text after the title (``probes replay`` shows its speed there).

    Raises:
        ValueError: on an argument out of range (named in the message).

    Example::

        dashboard = Dashboard(top_n=5)
        probe.subscribe(dashboard)
        rich.print(dashboard)
    """

    def __init__(
        self,
        *,
        title: str = "probes",
        top_n: int = 8,
        max_rows: int = 6,
        history: int = 64,
        keyword_metric: Literal["p_seq", "p_first"] = "p_seq",
        surprise_threshold: float = 1e-3,
        max_alerts: int = 5,
        max_pending: int = 1024,
        wide_at: int = 150,
        clock: Optional[Callable[[], float]] = time.monotonic,
        note: str = "",
    ) -> None:
        self.title = str(title)
        self.top_n = _positive_int("top_n", top_n)
        self.max_rows = _positive_int("max_rows", max_rows)
        self.history = _positive_int("history", history, 2)
        if keyword_metric not in ("p_seq", "p_first"):
            raise ValueError(f"Expected `keyword_metric` to be 'p_seq' or 'p_first', got {keyword_metric!r}.")
        self.keyword_metric: Literal["p_seq", "p_first"] = keyword_metric
        if not (isinstance(surprise_threshold, (int, float)) and 0.0 < surprise_threshold < 1.0):
            raise ValueError(f"Expected `surprise_threshold` in (0, 1), got {surprise_threshold!r}.")
        self.surprise_threshold = float(surprise_threshold)
        self.max_alerts = _positive_int("max_alerts", max_alerts)
        self.max_pending = _positive_int("max_pending", max_pending)
        self.wide_at = _positive_int("wide_at", wide_at)
        self.clock = clock
        self.note = note
        self._lock = threading.RLock()
        self._states: dict[str, SourceState] = {}
        self._pending: deque[StagedRecord] = deque()
        self._alerts: dict[str, Alert] = {}
        self._seq = 0
        self._progress: deque[tuple[float, int]] = deque(maxlen=32)
        self._t0: Optional[float] = None
        self._record_time = False
        self._step = -1
        self._epoch = -1

    # -- RecordSink ---------------------------------------------------------------------------

    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        """Declare a source before its first record (``ProbeCallback.subscribe`` calls this).

        Raises:
            ValueError: on an empty source name, a non-mapping ``describe``, or a source already
                registered with a different probe type.
        """
        if not isinstance(source, str) or not source:
            raise ValueError(f"Expected `source` to be a non-empty string, got {source!r}.")
        if not isinstance(describe, Mapping):
            raise ValueError(
                f"Expected `describe` of source {source!r} to be a mapping (the probe's describe()),"
                f" got {type(describe).__name__}."
            )
        with self._lock:
            old = self._states.get(source)
            kind = str(describe.get("type", ""))
            if old is not None:
                if str(old.describe.get("type", "")) != kind:
                    raise ValueError(
                        f"Source {source!r} is already registered as {old.describe.get('type')!r}, not {kind!r}."
                        " Give each probe a distinct `name`."
                    )
                return
            self._states[source] = state_for(source, describe, self.options)

    def write(self, record: Record) -> None:
        """Stage ``record`` for the next draw; never waits for the device.

        Raises:
            TypeError: if ``record`` is not a :class:`~probes.core.records.Record`.
            KeyError: if its source was not registered.
        """
        if not isinstance(record, Record):
            raise TypeError(f"Expected a probes.core.records.Record, got {type(record).__name__}.")
        if record.source not in self._states:
            raise KeyError(
                f"Record from unregistered source {record.source!r}; call"
                f" register_source({record.source!r}, describe) first (ProbeCallback.subscribe does)."
            )
        self._pending.append(stage(record))
        t = record.extra.get("time") if record.extra else None
        if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
            self._record_time = True
            self._note(float(t), record.step, record.epoch)
        else:
            self._note(self._now(), record.step, record.epoch)
        if len(self._pending) > self.max_pending:
            self.drain(block=False)

    def flush(self) -> None:
        """Ingest every staged record, waiting for device copies if needed (not for the hot path)."""
        self.drain(block=True)

    # -- inputs besides records ---------------------------------------------------------------

    def update_progress(self, step: int, epoch: int = -1) -> None:
        """Tell the header the trainer's optimizer step and epoch (cheap; call every batch)."""
        self._note(self._now(), int(step), int(epoch))

    def alert(
        self, text: str, *, step: Optional[int] = None, level: AlertLevel = "error", key: Optional[str] = None
    ) -> None:
        """Show ``text`` in the alerts panel; an alert with the same ``key`` replaces it and counts a repeat.

        Args:
            text: one line, e.g. ``"expectation failed: p(sand->yellow) rose 3x"``.
            step: the optimizer step it refers to, if any (the latest step when None).
            level: ``"error"``, ``"warning"`` or ``"info"``.
            key: identity of the problem; defaults to ``text``.

        Raises:
            ValueError: on empty text or an unknown level.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"Expected alert `text` to be a non-empty string, got {text!r}.")
        if level not in _LEVELS:
            raise ValueError(f"Expected alert `level` in {_LEVELS}, got {level!r}.")
        self.drain()  # alerts of records already written come first
        with self._lock:
            self._add_alert(key or text, text, self._step if step is None else step, level)

    # -- reading ------------------------------------------------------------------------------

    def drain(self, *, block: bool = False) -> int:
        """Ingest staged records whose host copies are complete (all of them when ``block``).

        Returns:
            how many records were ingested.
        """
        n = 0
        with self._lock:
            while self._pending:
                staged = self._pending[0]
                if not staged.ready():
                    if not block:
                        break
                    staged.wait()
                self._pending.popleft()
                self._ingest(staged.to_record())
                n += 1
        return n

    @property
    def states(self) -> dict[str, SourceState]:
        """Source name -> its state (ingests what is ready first)."""
        self.drain()
        with self._lock:
            return dict(self._states)

    @property
    def alerts(self) -> list[Alert]:
        """Every alert, oldest first (one per key); ingests what is ready first."""
        self.drain()
        with self._lock:
            return sorted(self._alerts.values(), key=lambda a: a.seq)

    @property
    def options(self) -> DashboardOptions:
        """The settings the kinds' states and panels read."""
        return DashboardOptions(
            top_n=self.top_n,
            max_rows=self.max_rows,
            history=self.history,
            keyword_metric=self.keyword_metric,
            surprise_threshold=self.surprise_threshold,
        )

    def header(self) -> RunHeader:
        """The run header's values now."""
        with self._lock:
            samples = list(self._progress)
            rate = None
            if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
                rate = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
            elapsed = None
            if self._t0 is not None:
                now = samples[-1][0] if self._record_time or self.clock is None else self.clock()
                elapsed = now - self._t0
            return RunHeader(self.title, self._step, self._epoch, rate, elapsed, self.note)

    def summary_line(self) -> str:
        """One plain-text line summarising every source (for logs and non-terminal output)."""
        self.drain()
        with self._lock:
            return summary_line(self.header(), list(self._states.values()), len(self._alerts), options=self.options)

    def __rich__(self) -> RenderableType:
        self.drain()
        with self._lock:
            columns: dict[str, list[RenderableType]] = {"main": [], "side": []}
            options = self.options
            for s in self._states.values():
                kind = kinds.of(s.describe)
                if not s.has_data or kind.panel is None or isinstance(s, OtherState):
                    continue
                try:
                    columns[kind.column].append(kind.panel(s, options))
                except Exception as err:  # drawing runs in a refresh thread: report, never raise
                    self._add_alert(f"{s.source}/draw", f"{s.source}: cannot draw: {err!r}", s.step, "error")
            alerts = AlertsPanel(self.alerts, max_alerts=self.max_alerts).__rich__() if self._alerts else None
            return _Layout(self.header().__rich__(), columns["main"], columns["side"], alerts, self.wide_at)

    # -- internals ----------------------------------------------------------------------------

    def _now(self) -> Optional[float]:
        return None if self._record_time or self.clock is None else self.clock()

    def _note(self, t: Optional[float], step: int, epoch: int) -> None:
        if t is not None and self._t0 is None:
            self._t0 = t
        if step > self._step:
            self._step = step
            if t is not None:
                self._progress.append((t, step))
        if epoch > self._epoch:
            self._epoch = epoch

    def _ingest(self, record: Record) -> None:
        state = self._states[record.source]
        try:
            new = state.ingest(record)
        except Exception as err:  # a malformed record must not take the display (or training) down
            new = [NewAlert(f"{record.source}/ingest", f"{record.source}: unreadable record: {err!r}", record.step)]
        for a in new:
            self._add_alert(a.key, a.text, a.step, a.level)

    def _add_alert(self, key: str, text: str, step: Optional[int], level: str) -> None:
        self._seq += 1
        old = self._alerts.get(key)
        count = old.count + 1 if old is not None else 1
        self._alerts[key] = Alert(key, text, step, level, count, self._seq)


class _Layout:
    """Header, then panels in one column, or two from ``wide_at`` columns; alerts at the bottom."""

    def __init__(
        self,
        header: RenderableType,
        main: list[RenderableType],
        side: list[RenderableType],
        alerts: Optional[RenderableType],
        wide_at: int,
    ) -> None:
        self.header, self.main, self.side, self.alerts, self.wide_at = header, main, side, alerts, wide_at

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.header
        if self.main and self.side and options.max_width >= self.wide_at:
            grid = Table.grid(expand=True, padding=(0, 1))
            grid.add_column(ratio=1)
            grid.add_column(ratio=1)
            grid.add_row(Group(*self.main), Group(*self.side))
            yield grid
        else:
            yield from self.main
            yield from self.side
        if self.alerts is not None:
            yield self.alerts
