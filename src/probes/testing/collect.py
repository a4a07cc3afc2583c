"""Normalize what a test hands to an assertion (a run log, a probe callback, records) into
per-source arrays on the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from probes.core.records import Record

__all__ = ["RecordsLike", "SourceData", "collect", "element_names", "pick_source"]

RecordsLike = Union[str, "os.PathLike[str]", Any, Sequence[Record]]


@dataclass
class SourceData:
    """One probe's readings: ``metrics[name]`` has shape ``[n_steps, *shape]``."""

    source: str
    describe: Mapping[str, Any]
    steps: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.describe.get("type", ""))

    def names(self) -> list[str]:
        return element_names(self.describe)

    def index_of(self, element: Union[str, int]) -> int:
        names = self.names()
        if isinstance(element, int) and not isinstance(element, bool):
            width = next(iter(self.metrics.values())).shape[1] if self.metrics else 0
            if not 0 <= element < max(width, len(names)):
                raise ValueError(f"Index {element} out of range for source {self.source!r} ({width} elements).")
            return element
        if element not in names:
            raise ValueError(f"Unknown name {element!r} in source {self.source!r}; known: {names}.")
        return names.index(element)

    def metric(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise ValueError(f"Source {self.source!r} has no metric {name!r}; it has {sorted(self.metrics)}.")
        return self.metrics[name]


def element_names(describe: Mapping[str, Any]) -> list[str]:
    """Names along a source's first element axis (pairs, samples, formats + 'other', benchmarks,
    samples...), as the source's probe kind declares them; [] when the kind declares none."""
    from probes.core import kinds

    kind = kinds.of(describe)
    for axis in kind.axes:
        names = kind.labels(describe, axis)
        if names is not None:
            return names
    return []


def _from_records(records: Iterable[Record], describes: Mapping[str, Mapping[str, Any]]) -> dict[str, SourceData]:
    by_source: dict[str, dict[int, Record]] = {}
    for r in records:
        by_source.setdefault(r.source, {})[r.step] = r  # a later record of the same step supersedes
    out: dict[str, SourceData] = {}
    for source, recs in by_source.items():
        ordered = [recs[s] for s in sorted(recs)]
        names = list(ordered[0].tensors)
        metrics = {n: np.stack([r.tensors[n].detach().cpu().numpy() for r in ordered]) for n in names}
        out[source] = SourceData(
            source, dict(describes.get(source, {})), np.array(sorted(recs), dtype=np.int64), metrics
        )
    return out


def _from_run(run: Any) -> dict[str, SourceData]:
    out: dict[str, SourceData] = {}
    for source in run.sources():
        names = [m.split("/", 1)[1] for m in run.metrics(f"{source}/")]
        steps: Optional[np.ndarray] = None
        metrics: dict[str, np.ndarray] = {}
        for n in names:
            s, v = run.read(f"{source}/{n}")
            steps = s if steps is None else steps
            metrics[n] = v
        out[source] = SourceData(source, dict(run.describe(source)), np.asarray(steps, dtype=np.int64), metrics)
    return out


def collect(obj: RecordsLike) -> dict[str, SourceData]:
    """Per-source data from a run directory, an opened run, a probe callback (or a list of them),
    or a list of :class:`~probes.core.records.Record`.
    """
    from probes.core.probe import Probe

    if isinstance(obj, Mapping) and all(isinstance(v, SourceData) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, (str, os.PathLike)):
        from probes.runlog import open_run

        return _from_run(open_run(obj))
    if hasattr(obj, "sources") and hasattr(obj, "read") and hasattr(obj, "describe"):
        return _from_run(obj)
    if isinstance(obj, Probe):
        obj = [obj]
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(o, Probe) for o in obj):
            describes = {cb.source: cb.describe() for cb in obj}
            return _from_records([r for cb in obj for r in cb.history], describes)
        if all(isinstance(o, Record) for o in obj):
            return _from_records(obj, {})
    raise TypeError(
        f"Cannot read probe records from {type(obj).__name__}: pass a run directory, an opened run,"
        " a probe callback (or a list of them), or a list of probes.Record."
    )


def pick_source(data: Mapping[str, SourceData], kind: str, source: Optional[str] = None) -> SourceData:
    """The source named ``source``, or the only source of probe type ``kind``."""
    if not data:
        raise AssertionError("No probe records: did the probe run (and did training take any step)?")
    if source is not None:
        if source not in data:
            raise ValueError(f"No source {source!r}; available: {sorted(data)}.")
        return data[source]
    matches = [d for d in data.values() if d.kind == kind]
    if len(matches) == 1:
        return matches[0]
    if not matches and len(data) == 1:
        return next(iter(data.values()))  # plain records carry no type: accept the only source
    raise ValueError(
        f"Expected exactly one {kind} source, found {[d.source for d in matches] or 'none'} among"
        f" {sorted(data)}; pass `source=`."
    )
