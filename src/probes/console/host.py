"""Moving record tensors to the host without stalling training.

A record written on the training thread is *staged*: CUDA tensors start an asynchronous copy into
pinned host memory and an event marks its completion; CPU tensors are cloned (probes may update a
buffer in place after emitting it). The render path later takes the staged records whose copies
have finished (``event.query()``, never a wait), so drawing causes no device synchronisation.
Tensors on other devices (MPS, XLA) are copied in bulk when they are collected.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from probes.core.records import Record

__all__ = ["StagedRecord", "stage"]


class StagedRecord:
    """A record whose tensors are on their way to the host.

    Args:
        record: the record's step, source, epoch and extra, with no tensors (device tensors are
            not kept alive by staging).
        tensors: host tensors, or device tensors still to copy on collection.
        event: a CUDA event recorded after the asynchronous copies, or None.
    """

    __slots__ = ("event", "record", "tensors")

    def __init__(self, record: Record, tensors: Mapping[str, torch.Tensor], event: torch.cuda.Event | None) -> None:
        self.record = record
        self.tensors = dict(tensors)
        self.event = event

    def ready(self) -> bool:
        """True when the host copies are complete (never blocks)."""
        return self.event is None or bool(self.event.query())

    def wait(self) -> None:
        """Block until the host copies are complete (used by ``flush``, not by drawing)."""
        if self.event is not None:
            self.event.synchronize()

    def to_record(self) -> Record:
        """The record with host tensors (blocking only for non-CUDA accelerators)."""
        host = {k: v if v.device.type == "cpu" else v.to("cpu") for k, v in self.tensors.items()}
        r = self.record
        return Record(step=r.step, source=r.source, tensors=host, epoch=r.epoch, extra=dict(r.extra))


def stage(record: Record) -> StagedRecord:
    """Start moving ``record``'s tensors to the host without blocking (see module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    cuda_device: torch.device | None = None
    for name, value in record.tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"Expected tensor {record.source}/{name} to be a torch.Tensor, got {type(value).__name__}."
                " Wrap values with torch.as_tensor before emitting them."
            )
        t = value.detach()
        if t.device.type == "cuda":
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            tensors[name] = host
            cuda_device = t.device
        elif t.device.type == "cpu":
            tensors[name] = t.clone()
        else:
            tensors[name] = t
    event = None
    if cuda_device is not None:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(cuda_device))
    meta = Record(step=record.step, source=record.source, tensors={}, epoch=record.epoch, extra=record.extra)
    return StagedRecord(meta, tensors, event)
