"""Host-side state of one record source: the base the probe kinds' dashboard states extend.

A probe kind (:mod:`probes.core.kinds`) declares a ``state`` factory; the dashboard calls it with
the source, its ``describe()`` and the :class:`DashboardOptions`. A state ingests host records
(see :mod:`probes.console.host`) and returns the alerts they raise, keeping only what its panel
needs: typically the latest reading, the first one (a baseline) and a bounded
:class:`~probes.console.history.History` for sparklines. The helpers here are shared by the
kinds' states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch

from probes.console.history import History
from probes.core import kinds
from probes.core.records import Record

__all__ = [
    "DashboardOptions",
    "ElementState",
    "History",
    "NewAlert",
    "OtherState",
    "SourceState",
    "display_names",
    "floats",
    "nonfinite_alerts",
    "scalar",
    "state_for",
]


@dataclass(frozen=True)
class DashboardOptions:
    """The dashboard's settings every kind's state and panel may read (see
    :class:`~probes.console.Dashboard` for their meaning)."""

    top_n: int = 8
    max_rows: int = 6
    history: int = 64
    keyword_metric: str = "p_seq"
    surprise_threshold: float = 1e-3


@dataclass(frozen=True)
class NewAlert:
    """An alert raised while ingesting a record; ``key`` groups repeats of the same problem."""

    key: str
    text: str
    step: int
    level: str = "error"


def display_names(items: Any, what: str) -> Optional[list[str]]:
    """Display names of ``describe`` entries (strings, or mappings with a ``name``; ``what`` and the
    position otherwise), or None when ``items`` is not a list."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        return None
    names = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping) and "name" in item:
            names.append(str(item["name"]))
        else:
            names.append(f"{what}{i}")
    return names


def floats(t: torch.Tensor) -> list[float]:
    """Every element of ``t`` as a Python float (float64 first, so integers stay exact)."""
    return [float(v) for v in t.detach().reshape(-1).double().tolist()]


def scalar(tensors: Mapping[str, torch.Tensor], name: str) -> float:
    """The first element of metric ``name`` as a float; NaN when absent or empty."""
    t = tensors.get(name)
    if t is None or t.numel() == 0:
        return math.nan
    return float(t.reshape(-1)[0].double())


def nonfinite_alerts(
    source: str, name: str, t: Optional[torch.Tensor], labels: Sequence[str], step: int
) -> list[NewAlert]:
    """One alert naming up to three entries of ``t`` that are NaN or infinite."""
    if t is None or not t.is_floating_point():
        return []
    bad = ~torch.isfinite(t.reshape(-1))
    n = int(bad.sum())
    if n == 0:
        return []
    idx = bad.nonzero().reshape(-1).tolist()[:3]
    which = ", ".join(labels[i] if i < len(labels) else f"#{i}" for i in idx)
    more = f" and {n - len(idx)} more" if n > len(idx) else ""
    text = f"{source}: NaN/inf in {name} ({which}{more})"
    return [NewAlert(f"{source}/{name}/nonfinite", text, step)]


class SourceState:
    """What the dashboard keeps about one source. A kind's state subclasses it and overrides
    :meth:`_ingest`.

    Args:
        source: the source name.
        describe: the probe's ``describe()`` mapping.
        options: the dashboard's settings (``options.history`` points are kept for sparklines).
    """

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        self.source = source
        self.describe = dict(describe)
        self.options = options if options is not None else DashboardOptions()
        self.history_capacity = self.options.history
        self.step = -1
        self.epoch = -1
        self.n_records = 0

    @property
    def has_data(self) -> bool:
        """True once a record has been ingested."""
        return self.n_records > 0

    def history(self) -> History[Any]:
        """A new bounded history of the dashboard's capacity."""
        return History(self.history_capacity)

    def ingest(self, record: Record) -> list[NewAlert]:
        """Take in one host record; returns the alerts it raises."""
        alerts = self._ingest(record.tensors, record.step)
        self.step = record.step
        self.epoch = record.epoch
        self.n_records += 1
        return alerts

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        return []

    def value(self, name: str, i: int) -> float:
        """Latest value of vector metric ``name`` at element ``i`` (NaN when absent); a state that
        keeps ``latest`` (metric -> list of floats) gets it for free."""
        values = getattr(self, "latest", {}).get(name)
        return values[i] if values is not None and i < len(values) else math.nan

    @staticmethod
    def column(history: History[Any], i: int) -> list[float]:
        """Element ``i`` of every row of a history of vectors (NaN where a row is shorter)."""
        return [row[i] if i < len(row) else math.nan for row in history.series()[1]]



class ElementState(SourceState):
    """A source whose vector metrics run over named elements (samples, items, groups): the latest
    reading as lists of floats, and the element names from ``describe()[axis]``, extended with
    positional names when a record holds more elements. A kind's state sets the class attributes
    and calls :meth:`take` first in its ``_ingest``.
    """

    axis: ClassVar[str] = "samples"  # the describe() key that lists the elements
    element: ClassVar[str] = "sample"  # positional names: "sample0", "sample1", ...
    counted_by: ClassVar[Optional[str]] = None  # the metric whose length counts them (None: the longest)

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.names = display_names(self.describe.get(self.axis), self.element) or []
        self.latest: dict[str, list[float]] = {}

    def take(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Keep ``tensors`` as the latest reading and name every element it holds."""
        self.latest = {k: floats(v) for k, v in tensors.items()}
        if self.counted_by is not None:
            n = len(self.latest.get(self.counted_by, []))
        else:
            n = max((len(v) for v in self.latest.values()), default=0)
        if len(self.names) < n:
            self.names += [f"{self.element}{i}" for i in range(len(self.names), n)]


class OtherState(SourceState):
    """A source whose kind declares no dashboard state: only counted."""


def state_for(source: str, describe: Mapping[str, Any], options: DashboardOptions) -> SourceState:
    """The state the kind of ``describe["type"]`` declares (an :class:`OtherState` when none)."""
    factory = kinds.of(describe).state
    return factory(source, describe, options) if factory is not None else OtherState(source, describe, options)
