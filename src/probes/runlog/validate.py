"""Validation of a record at :meth:`~probes.runlog.RunWriter.write`, before it is buffered.

A record is checked completely (step and epoch types and ranges, source and metric names,
tensor types, dtypes, layouts, devices, and the dtype/shape/device every earlier record of its
source had, plus its probe type's documented schema) so that a bad record is refused alone with
an :class:`~probes.runlog.errors.InvalidRecordError` and can never make a later flush fail for
the records of other sources.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch

from probes.core.records import Record
from probes.runlog import layout as fmt
from probes.runlog.errors import InvalidRecordError
from probes.runlog.kinds import schema_problem
from probes.runlog.stacking import SUPPORTED

__all__ = ["INT64_MAX", "SourceSchema", "check_source_name", "first_record", "next_record"]

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class SourceSchema:
    """What every record of one source carries: metric names (emission order), per metric
    ``(dtype, shape, device)``, and the metrics grouped by equal dtype, shape and device (each
    group is stacked into one row per record at ``write()``, and the rows into one tensor per
    flush); ``record_bytes`` is the size of one record's tensors."""

    names: tuple[str, ...]
    keys: frozenset[str]
    specs: dict[str, tuple[torch.dtype, torch.Size, torch.device]]
    record_bytes: int
    groups: tuple[tuple[tuple[str, ...], torch.dtype, torch.Size, torch.device], ...] = ()


Rows = list[torch.Tensor]
"""One tensor per group of a record: the metric itself for a group of one, else
``torch.stack`` of the group's metrics (``[len(names), *shape]``)."""


def _plan(specs: dict[str, tuple[torch.dtype, torch.Size, torch.device]]) -> tuple[Any, ...]:
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault(spec, []).append(name)
    return tuple((tuple(names), *spec) for spec, names in groups.items())


def _rows(schema: SourceSchema, tensors: Mapping[str, torch.Tensor]) -> Rows:
    rows = []
    for names, _, _, _ in schema.groups:
        row = tensors[names[0]] if len(names) == 1 else torch.stack([tensors[m] for m in names])
        rows.append(row.detach() if row.requires_grad else row)
    return rows


def check_source_name(source: Any) -> None:
    """Raises InvalidRecordError unless ``source`` can name a source (no '/', printable)."""
    problem = fmt.name_problem(source)
    if problem is None and "/" in source:
        problem = "it contains '/'"
    if problem is not None:
        raise InvalidRecordError(
            f"Expected a source name to be a non-empty printable string without '/', got {_show(source)}:"
            f" {problem}. Rename the probe (its `name`)."
        )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(value: Any, what: str, low: int, source: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidRecordError(
            f"Expected `record.{what}` of source {_show(source)} to be an int, got {_show(value)}"
            f" ({type(value).__name__}). {fix}"
        )
    value = int(value)
    if not low <= value <= INT64_MAX:
        raise InvalidRecordError(
            f"Expected `record.{what}` of source {_show(source)} to be in [{low}, 2**63 - 1], got {value}. {fix}"
        )
    return value


def _header(record: Any) -> tuple[str, int, int, Mapping[str, Any]]:
    for attr in ("step", "source", "tensors", "epoch"):
        if not hasattr(record, attr):
            raise InvalidRecordError(
                f"Expected a probes.core.records.Record, got {type(record).__name__} without `{attr}`."
            )
    source = record.source
    check_source_name(source)
    step = _check_int(record.step, "step", 0, source, "Steps count optimizer updates: 0, 1, 2...")
    epoch = _check_int(record.epoch, "epoch", -1, source, "Use -1 when the epoch is unknown.")
    tensors = record.tensors
    if not isinstance(tensors, Mapping):
        raise InvalidRecordError(
            f"Expected `record.tensors` of source {_show(source)} at step {step} to be a mapping of metric name"
            f" to tensor, got {type(tensors).__name__}."
        )
    return source, step, epoch, tensors


def _tensor(source: str, step: int, name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidRecordError(
                f"Metric {_show(source + '/' + name)} at step {step} is a {type(value).__name__}, not a tensor or"
                " a number/array convertible to one. Emit a torch.Tensor."
            ) from None
    if value.dtype not in SUPPORTED:
        raise InvalidRecordError(
            f"Metric {_show(source + '/' + name)} at step {step} has dtype {value.dtype}, which the run log does"
            f" not store. Supported: {sorted(str(d).replace('torch.', '') for d in SUPPORTED)}; convert it first."
        )
    if value.layout != torch.strided:
        raise InvalidRecordError(
            f"Metric {_show(source + '/' + name)} at step {step} is a {value.layout} tensor; emit a dense"
            " (strided) tensor, e.g. `t.to_dense()`."
        )
    if value.device.type == "meta":
        raise InvalidRecordError(
            f"Metric {_show(source + '/' + name)} at step {step} is on the meta device and has no data;"
            " emit a tensor on the CPU or an accelerator."
        )
    return value


def first_record(record: Any, describe: Mapping[str, Any]) -> tuple[str, int, int, Rows, SourceSchema]:
    """Validate the first record of a source and derive the schema its later records must follow.

    Raises:
        InvalidRecordError: anything wrong, named with the fix.
    """
    source, step, epoch, tensors = _header(record)
    out: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        problem = fmt.name_problem(name)
        if problem is None and name.startswith("__") and name.endswith("__"):
            problem = "names of the form '__x__' are reserved for the index"
        if problem is not None:
            raise InvalidRecordError(
                f"Metric name {_show(name)} of source {_show(source)} is not allowed: {problem}. Rename the metric."
            )
        out[name] = _tensor(source, step, name, value)
    specs = {n: (t.dtype, t.shape, t.device) for n, t in out.items()}
    problem = schema_problem(describe, {n: (SUPPORTED[t.dtype], tuple(t.shape)) for n, t in out.items()})
    if problem is not None:
        raise InvalidRecordError(
            f"Record of source {_show(source)} at step {step} breaks the documented record schema: {problem}"
            " (docs/records.md). Emit the documented shapes, or use another `type` in describe()."
        )
    nbytes = sum(t.numel() * t.element_size() for t in out.values())
    schema = SourceSchema(tuple(out), frozenset(out), specs, nbytes, _plan(specs))
    return source, step, epoch, _rows(schema, out), schema


def next_record(record: Any, schema: SourceSchema) -> tuple[int, int, Rows]:
    """Validate a later record of a source against its schema (names, dtypes, shapes, devices)
    and stack its groups.

    The common case costs one ``torch.stack`` per group plus a dtype check per metric; anything
    unexpected goes through :func:`_next_record_slow`, which names the offending value.

    Raises:
        InvalidRecordError: anything wrong, named with the fix.
    """
    if type(record) is Record:
        step, epoch, tensors = record.step, record.epoch, record.tensors
        if (
            type(step) is int
            and type(epoch) is int
            and 0 <= step <= INT64_MAX
            and -1 <= epoch <= INT64_MAX
            and type(tensors) is dict
            and len(tensors) == len(schema.names)
        ):
            rows = _fast_rows(schema, tensors)
            if rows is not None:
                return step, epoch, rows
    return _next_record_slow(record, schema)


def _fast_rows(schema: SourceSchema, tensors: dict[str, Any]) -> Optional[Rows]:
    """The rows of a record that matches its schema exactly, or None to take the slow path.

    ``tensors`` has as many names as the schema; a missing name raises KeyError here."""
    rows = []
    try:
        for names, dtype, shape, device in schema.groups:
            if len(names) == 1:
                row = tensors[names[0]]
                if row.dtype is not dtype or row.shape != shape:
                    return None
            else:
                values = [tensors[m] for m in names]
                for v in values:  # torch.stack would promote a differing dtype silently
                    if v.dtype is not dtype:
                        return None
                row = torch.stack(values)  # raises on a shape, device or layout mismatch, or a non-tensor
                if row.shape[1:] != shape:
                    return None
            if type(row) is not torch.Tensor or row.device != device or row.layout is not torch.strided:
                return None
            rows.append(row.detach() if row.requires_grad else row)
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError):
        return None
    return rows


def _next_record_slow(record: Any, schema: SourceSchema) -> tuple[int, int, Rows]:
    source, step, epoch, tensors = _header(record)
    if tensors.keys() != schema.keys:
        raise InvalidRecordError(
            f"Record of source {_show(source)} at step {step} has metrics {sorted(map(str, tensors))[:20]}, but"
            f" earlier records of this source have {sorted(schema.names)[:20]}. Every record of a source must"
            " carry the same metric names; emit different sets under different sources."
        )
    out: dict[str, torch.Tensor] = {}
    for name in schema.names:
        value = tensors[name]
        dtype, shape, device = schema.specs[name]
        if not (
            isinstance(value, torch.Tensor)
            and value.dtype == dtype
            and value.shape == shape
            and value.device == device
            and value.layout == torch.strided
        ):
            value = _tensor(source, step, name, value)
            if (value.dtype, value.shape, value.device) != (dtype, shape, device):
                raise InvalidRecordError(
                    f"Metric {_show(source + '/' + name)} at step {step} is {_desc(value.dtype, value.shape)} on"
                    f" {value.device}, but earlier records are {_desc(dtype, shape)} on {device}. Keep every"
                    " record's tensors the same dtype, shape and device."
                )
        out[name] = value
    return step, epoch, _rows(schema, out)


def _desc(dtype: torch.dtype, shape: Any) -> str:
    return f"{str(dtype).replace('torch.', '')}{list(shape)}"
