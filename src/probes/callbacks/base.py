"""Shared plumbing for probe callbacks: record emission, in-memory history, sink discovery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from probes.records import Record, RecordSink

__all__ = ["ProbeCallback"]


class ProbeCallback(Callback):
    """Base class for callbacks that emit :class:`~probes.records.Record` objects.

    Subclasses set ``self.source`` (unique per instance, used as the metric namespace and the
    ``state_key``), implement :meth:`describe`, and call :meth:`emit`. Sinks (the run log, the live
    console) subscribe themselves in their own ``setup`` by finding probe callbacks among
    ``trainer.callbacks``; a user can also call :meth:`subscribe` directly.

    Every emitted record is kept in :attr:`history` (tensors stay on their device) so tests and
    assertion helpers can read a callback without any sink.
    """

    source: str

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source or "/" in source:
            raise ValueError(
                f"Expected `name` to be a non-empty string without '/', got {source!r}. Pass e.g. name='keyword'."
            )
        self.source = source
        self.history: list[Record] = []
        self._sinks: list[RecordSink] = []

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.source}]"

    def describe(self) -> Mapping[str, Any]:
        """JSON-serialisable definition of what this probe measures."""
        return {"type": type(self).__name__, "source": self.source}

    def subscribe(self, sink: RecordSink) -> None:
        """Send every future record to ``sink`` (idempotent)."""
        if any(s is sink for s in self._sinks):
            return
        self._sinks.append(sink)
        sink.register_source(self.source, self.describe())

    def emit(self, step: int, tensors: Mapping[str, torch.Tensor], *, epoch: int = -1) -> Record:
        record = Record(step=int(step), source=self.source, tensors=dict(tensors), epoch=epoch)
        self.history.append(record)
        for sink in self._sinks:
            sink.write(record)
        return record

    def series(self, name: str) -> tuple[list[int], torch.Tensor]:
        """Steps and stacked values (on the host) of metric ``name`` from :attr:`history`."""
        rows = [r for r in self.history if name in r.tensors]
        if not rows:
            known = sorted({k for r in self.history for k in r.tensors})
            raise KeyError(f"No records of metric {name!r} in {self.source!r}; known: {known}")
        values = torch.stack([r.tensors[name].detach() for r in rows]).cpu()
        return [r.step for r in rows], values

    @staticmethod
    def probe_shard(trainer: pl.Trainer) -> tuple[int, int]:
        """(rank, world size) over which to shard a probe set.

        Plain data parallelism (DDP) shards: each rank scores its slice and the slices are gathered.
        Sharded-parameter strategies (FSDP, DeepSpeed, model parallel) run collectives inside the
        forward, so every rank must run the same forwards: there the probe set is not sharded.
        """
        from lightning.pytorch.strategies import DDPStrategy

        if trainer.world_size > 1 and isinstance(trainer.strategy, DDPStrategy):
            return trainer.global_rank, trainer.world_size
        return 0, 1

    @staticmethod
    def gather_fn(trainer: pl.Trainer):  # type: ignore[no-untyped-def]
        """``tensor -> [world_size, *shape]`` through the trainer's strategy (all ranks must call)."""
        return lambda t: trainer.strategy.all_gather(t)

    @staticmethod
    def probe_callbacks(trainer: pl.Trainer) -> list[ProbeCallback]:
        return [cb for cb in trainer.callbacks if isinstance(cb, ProbeCallback)]  # type: ignore[attr-defined]
