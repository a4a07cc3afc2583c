"""The one-line plain-text summary used when output is not a terminal (CI logs, files)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

from rich.text import Text

from probes.console.numbers import MISSING, fmt_count, fmt_duration, fmt_rate
from probes.console.panels import RunHeader
from probes.console.states import DashboardOptions, OtherState, SourceState
from probes.core import kinds

__all__ = ["print_alerts", "summary_line"]


def summary_line(
    header: RunHeader, states: Sequence[SourceState], n_alerts: int, *, options: Optional[DashboardOptions] = None
) -> str:
    """``probes step 120 epoch 0 steps/s 12.5 elapsed 0:00:09 | keyword: ... | alerts 1``.

    Args:
        header: the run header values.
        states: the sources, in registration order (those without data, or whose kind declares
            no ``status``, are skipped).
        n_alerts: alerts raised so far.
        options: the dashboard's settings (defaults when None).
    """
    options = options if options is not None else DashboardOptions()
    epoch = str(header.epoch) if header.epoch >= 0 else MISSING
    step = fmt_count(header.step) if header.step >= 0 else MISSING
    parts = [
        f"{header.title} step {step} epoch {epoch} steps/s {fmt_rate(header.steps_per_s)}"
        f" elapsed {fmt_duration(header.elapsed)}"
    ]
    for s in states:
        status = kinds.of(s.describe).status
        if s.has_data and status is not None and not isinstance(s, OtherState):
            try:
                parts.append(status(s, options))
            except Exception as err:  # a kind's view must not take the log line (or training) down
                parts.append(f"{s.source}: cannot summarise: {err!r}")
    if n_alerts:
        parts.append(f"alerts {n_alerts}")
    return " | ".join(parts)


def print_alerts(console: Any, alerts: Iterable[Any], after_seq: int) -> int:
    """Print, one line each, the alerts numbered after ``after_seq`` (``probes alert step N: ...``);
    returns the number of the last alert printed (``after_seq`` when none was new)."""
    for a in alerts:
        if a.seq > after_seq:
            where = f" step {a.step}" if a.step is not None and a.step >= 0 else ""
            console.print(Text(f"probes alert{where}: {a.text}"), soft_wrap=True, highlight=False)
            after_seq = a.seq
    return after_seq
