"""Turning one flush (a :class:`Job`) into the bytes of one shard, and sizing shard headers.

The header (tensor table plus ``__metadata__``) is what the reader caps
(:data:`probes.runlog.layout.MAX_HEADER_BYTES`); :func:`header_estimate` bounds a source's share
of it from above, so the writer can split a flush into several shards, or refuse a source at
``register_source``/``write()``, instead of ever writing a header its reader refuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from safetensors.torch import save as _st_save

from probes.runlog import layout as fmt
from probes.runlog.errors import RunLogError
from probes.runlog.stacking import compact, st_dtype

__all__ = ["Block", "Job", "encode", "header_estimate", "json_size"]

FIXED_HEADER = 2048  # format, schema, seq, timeline, status, steps, crc... with room to spare


@dataclass
class Block:
    """The stacked records of one source in one shard."""

    steps: torch.Tensor
    epochs: torch.Tensor
    times: torch.Tensor
    names: tuple[str, ...]
    # (metric names, stacked tensor): [n, *shape] for one name, [n, len(names), *shape] for several
    groups: list[tuple[tuple[str, ...], torch.Tensor]]


@dataclass
class Job:
    """One shard to write: its number, blocks, definitions (a dict, or None with the shard
    holding it in ``describe_seq``) and status."""

    seq: int
    blocks: dict[str, Block]
    describes: dict[str, Optional[Mapping[str, Any]]]
    describe_seq: dict[str, int]
    describe_version: dict[str, int]
    status: str
    n_records: int = 0
    step_range: Optional[tuple[int, int]] = None
    attempts: int = 0
    written: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data the job holds."""
        total = 0
        for blk in self.blocks.values():
            for _, t in blk.groups:
                total += t.numel() * t.element_size()
            total += 24 * len(blk.steps)
        return total

    def to_host(self) -> None:
        """Move every stacked tensor to the CPU (a held job must not pin accelerator memory)."""
        for blk in self.blocks.values():
            blk.groups = [(names, t.to("cpu")) for names, t in blk.groups]


def json_size(value: Any) -> int:
    """Bytes ``value`` takes as a metadata string inside the safetensors header (JSON of JSON)."""
    return len(json.dumps(fmt.dumps(value)))


def header_estimate(source: str, names: Sequence[str], describe: Optional[Mapping[str, Any]]) -> int:
    """An upper bound of the header bytes one source's block adds to a shard."""
    total = 256 + (json_size(describe) if describe is not None else 32)
    for name in (*fmt.INDEX_NAMES, *names):
        key = len(json.dumps(json.dumps(f"{source}/{name}")))
        total += 3 * key + 2 * 160  # tensor table entry, metadata tensor spec, metric list
    return total


def encode(
    job: Job,
    *,
    timeline: int,
    parent: int,
    fork_step: int,
    run_info: Mapping[str, Any],
    max_header_bytes: int,
) -> tuple[bytes, int, int, int]:
    """The bytes of the shard for ``job``, with its record count and step range.

    Raises:
        RunLogError: the header would exceed ``max_header_bytes`` (the writer sizes jobs so that
            this does not happen).
    """
    tensors: dict[str, torch.Tensor] = {}
    spec: dict[str, list[Any]] = {}
    sources: dict[str, Any] = {}
    step_min, step_max, n_total = None, None, 0
    for source, blk in job.blocks.items():
        parts = {fmt.STEP: blk.steps, fmt.EPOCH: blk.epochs, fmt.TIME: blk.times}
        for names, stacked in blk.groups:
            host = stacked.to("cpu")  # one bulk transfer per group of same-dtype, same-shape metrics
            if len(names) == 1:
                parts[names[0]] = host.contiguous()
            else:
                parts.update({m: compact(host[:, k]) for k, m in enumerate(names)})
        for name, t in parts.items():
            key = f"{source}/{name}"
            tensors[key] = t
            crc = fmt.data_crc(t.reshape(-1).view(torch.uint8).numpy())
            spec[key] = [st_dtype(t.dtype), list(t.shape), crc]
        n = len(blk.steps)
        lo, hi = (int(blk.steps.min()), int(blk.steps.max())) if n else (-1, -1)
        entry: dict[str, Any] = {"n": n, "metrics": list(blk.names), "step_min": lo, "step_max": hi}
        describe = job.describes.get(source)
        if describe is None:
            entry["describe_seq"] = job.describe_seq[source]
        else:
            entry["describe"] = describe
        sources[source] = entry
        if n:
            step_min = lo if step_min is None else min(step_min, lo)
            step_max = hi if step_max is None else max(step_max, hi)
            n_total += n
    fields = {
        fmt.K_FORMAT: fmt.FORMAT_NAME,
        fmt.K_SCHEMA: fmt.SCHEMA_VERSION,
        fmt.K_SEQ: job.seq,
        fmt.K_TIMELINE: timeline,
        fmt.K_PARENT: parent,
        fmt.K_FORK: fork_step,
        fmt.K_STATUS: job.status,
        fmt.K_CREATED: time.time(),
        fmt.K_RUN: run_info,
        fmt.K_SOURCES: sources,
        fmt.K_TENSORS: spec,
        fmt.K_STEPS: {
            "n": n_total,
            "min": -1 if step_min is None else step_min,
            "max": -1 if step_max is None else step_max,
        },
    }
    metadata = {k: fmt.dumps(v) for k, v in fields.items()}
    metadata[fmt.K_CRC] = str(fmt.canonical_crc(metadata))
    data = _st_save(tensors, metadata=metadata)
    header = int.from_bytes(data[:8], "little")
    if header > max_header_bytes:
        raise RunLogError(
            f"Shard {fmt.shard_name(job.seq, timeline)} would have a {header}-byte header, over the cap of"
            f" {max_header_bytes} bytes that readers accept; it was not written. This is a bug in the"
            " writer's sizing: please report it."
        )
    return data, n_total, -1 if step_min is None else step_min, -1 if step_max is None else step_max
