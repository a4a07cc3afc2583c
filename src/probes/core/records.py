"""The one record type every probe emits, and the sink protocol that consumes records.

A :class:`Record` is a global optimizer step plus named tensors. The step is the number of
optimizer updates the weights had received when they were read: a reading taken in
``on_before_optimizer_step`` while ``trainer.global_step == t`` is recorded as step ``t``, which
is the *before* reading of update ``t + 1`` and the *after* reading of update ``t``.

Tensors may live on any device; sinks move them to the host in bulk, never one ``.item()`` at a
time. Within one ``source`` every record carries the same tensor names with the same shapes, so a
sink can stack them along the step axis.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import torch

__all__ = ["Record", "RecordHistory", "RecordSink"]


@dataclass(frozen=True)
class Record:
    """One reading of one probe.

    Args:
        step: optimizer updates applied to the weights that were read (see module docstring).
        source: the emitting probe's namespace, for example ``"keyword"``; unique per callback.
        tensors: metric name -> tensor of a shape fixed for that name within ``source``.
        epoch: the trainer's epoch when the reading was taken, or -1 when unknown.
    """

    step: int
    source: str
    tensors: Mapping[str, torch.Tensor]
    epoch: int = -1
    extra: Mapping[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Fully qualified metric names, ``"{source}/{name}"``, in insertion order."""
        return [f"{self.source}/{name}" for name in self.tensors]

    def to_host(self) -> Record:
        """A copy whose tensors are detached CPU tensors (one bulk transfer per tensor)."""
        host = {k: v.detach().to("cpu", non_blocking=False) for k, v in self.tensors.items()}
        return Record(self.step, self.source, host, self.epoch, dict(self.extra))


@runtime_checkable
class RecordSink(Protocol):
    """Anything that consumes records: the run log, the live console, a test collector.

    ``describe`` is the probe's JSON-serialisable definition (pairs, samples, formats), handed to
    the sink once per source before that source's first record.
    """

    def register_source(self, source: str, describe: Mapping[str, Any]) -> None: ...

    def write(self, record: Record) -> None: ...

    def flush(self) -> None: ...


class RecordHistory(list):  # type: ignore[type-arg]
    """A probe's in-memory records, on the host and capped: past ``limit`` records the oldest are
    dropped (the run log is the full record). A plain list otherwise (index, slice, iterate).

    A record whose tensors live on a CUDA device is copied to pinned host memory with non-blocking
    copies queued behind the reading that made it, and a CUDA event marks their end: appending
    never waits for the device, nothing is kept on the accelerator, and the first access (index,
    iteration) waits for the copies still in flight. Tensors on other devices are copied
    synchronously; CPU records are kept as they are. Sinks still get the probe's original record.

    Args:
        limit: the most records kept; None keeps every record.
    """

    def __init__(self, limit: Optional[int] = 10_000) -> None:
        super().__init__()
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValueError(f"Expected the history `limit` to be a positive int or None, got {limit!r}.")
        self.limit = limit
        self.n_dropped = 0
        self._in_flight: list[Any] = []  # CUDA events of host copies not yet known to be done

    def append(self, record: Record) -> None:  # type: ignore[override]
        super().append(self._host(record))
        if self.limit is not None and len(self) > self.limit:
            drop = len(self) - self.limit
            del self[:drop]
            self.n_dropped += drop

    def _host(self, record: Record) -> Record:
        devices = {t.device.type for t in record.tensors.values()}
        if devices <= {"cpu"}:
            return record
        host: dict[str, torch.Tensor] = {}
        for name, value in record.tensors.items():
            value = value.detach()
            if value.device.type == "cuda":
                copy = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                host[name] = copy.copy_(value, non_blocking=True)
            else:
                host[name] = value.to("cpu")
        if "cuda" in devices:
            event = torch.cuda.Event()
            event.record()
            self._in_flight.append(event)
        return Record(record.step, record.source, host, record.epoch, dict(record.extra))

    def settle(self) -> None:
        """Wait for the host copies still in flight (accessors call it)."""
        events, self._in_flight = self._in_flight, []
        for event in events:
            event.synchronize()

    def __getitem__(self, index: Any) -> Any:
        if self._in_flight:
            self.settle()
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Record]:
        if self._in_flight:
            self.settle()
        return super().__iter__()

    def __reversed__(self) -> Iterator[Record]:
        if self._in_flight:
            self.settle()
        return super().__reversed__()
