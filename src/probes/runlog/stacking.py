"""Stacking buffered records into one tensor per metric group, with schema validation.

Within one source every record carries the same metrics with the same dtypes and shapes
(``docs/records.md``). :class:`Stacker` remembers that schema per source for a writer's lifetime
and turns a list of records into stacked tensors on the records' device, raising
:class:`Rejected` (with the offending records) when a record does not fit.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from probes.records import Record
from probes.runlog import format as fmt

__all__ = ["SUPPORTED", "Rejected", "Stacker", "compact", "st_dtype"]

SUPPORTED: dict[torch.dtype, str] = {
    getattr(torch, tname): st
    for st, (_, tname) in fmt.DTYPES.items()
    if isinstance(getattr(torch, tname, None), torch.dtype)
}
"""torch dtype -> safetensors dtype name, for every dtype the run log stores."""


def st_dtype(dtype: torch.dtype) -> str:
    """The safetensors name of a supported torch dtype."""
    return SUPPORTED[dtype]


class Rejected(Exception):
    """Records that cannot be stacked (``bad`` None: every buffered record of the source)."""

    def __init__(self, message: str, bad: Optional[list[Record]]) -> None:
        super().__init__(message)
        self.bad = bad


class Stacker:
    """Stacks records of each source; remembers each metric's dtype and shape across flushes."""

    def __init__(self) -> None:
        self._schemas: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        self._groups: dict[str, list[tuple[tuple[str, ...], torch.dtype, tuple[int, ...]]]] = {}

    def stack(
        self, source: str, names: tuple[str, ...], recs: list[Record]
    ) -> list[tuple[tuple[str, ...], torch.Tensor]]:
        """Stack every metric of ``source`` on the records' device.

        Metrics sharing dtype, shape and device are stacked together (one ``torch.stack`` per
        record, then one over records), which costs far less per scalar than one stack per metric
        and lets the flush move each group to the host in one transfer. Anything unexpected falls
        back to :meth:`_stack`, one metric at a time, which converts non-tensors and names the
        offending record.
        """
        plan = self._groups.get(source)
        if plan is None:
            plan = self._groups[source] = _plan_groups(names, recs[0])
        if plan:
            try:
                return [self._stack_group(names, dtype, shape, recs) for names, dtype, shape in plan]
            except (_Mismatch, TypeError, RuntimeError, KeyError):
                pass
        return [((name,), self._stack(source, name, recs)) for name in names]

    def _stack_group(
        self, names: tuple[str, ...], dtype: torch.dtype, shape: tuple[int, ...], recs: list[Record]
    ) -> tuple[tuple[str, ...], torch.Tensor]:
        if dtype not in SUPPORTED:
            raise _Mismatch  # the per-metric path explains what is wrong
        if len(names) == 1:
            stacked = torch.stack([r.tensors[names[0]] for r in recs])
            if stacked.dtype != dtype or tuple(stacked.shape[1:]) != shape:
                raise _Mismatch
        else:
            rows = [torch.stack([r.tensors[m] for m in names]) for r in recs]
            if any(row.dtype != dtype for row in rows):
                raise _Mismatch  # a promotion hid a dtype change
            stacked = torch.stack(rows)
            if tuple(stacked.shape[2:]) != shape:
                raise _Mismatch
        for m in names:
            self._schemas.setdefault(f"{recs[0].source}/{m}", (dtype, shape))
        return names, stacked.detach()

    def _stack(self, source: str, name: str, recs: list[Record]) -> torch.Tensor:
        """One tensor ``[n, *shape]`` on the records' device; validates dtype, shape and device."""
        key = f"{source}/{name}"
        values = [r.tensors[name] for r in recs]
        want = self._schemas.get(key)
        try:
            stacked: Optional[torch.Tensor] = torch.stack(values).detach()
        except (TypeError, RuntimeError):
            stacked = None
        if stacked is not None and want is None:
            ref = values[0] if isinstance(values[0], torch.Tensor) else stacked[0]
            want = (ref.dtype, tuple(ref.shape))
        if stacked is None or stacked.dtype != want[0] or tuple(stacked.shape[1:]) != want[1]:  # type: ignore[index]
            first = _as_tensor(values[0])
            if first is None:
                what = type(values[0]).__name__
                raise Rejected(f"Metric {key} at step {recs[0].step} is a {what}, not a tensor", [recs[0]])
            if want is None:
                want = (first.dtype, tuple(first.shape))
            bad = [r for r in recs if not _conforms(r.tensors[name], want[0], want[1], first.device)]
            if bad:
                t = _as_tensor(bad[0].tensors[name])
                got = f"{_desc(t.dtype, t.shape)} on {t.device}" if t is not None else "not a tensor"
                raise Rejected(
                    f"Metric {key} at step {bad[0].step} is {got}, but earlier records are"
                    f" {_desc(*want)} on {first.device}. Keep every record's tensors the same dtype, shape and device",
                    bad,
                )
            stacked = torch.stack([_as_tensor(v) for v in values]).detach()  # type: ignore[misc]
        if stacked.dtype not in SUPPORTED:
            raise Rejected(
                f"Metric {key} has dtype {stacked.dtype}, which the run log does not store."
                f" Supported: {sorted(str(d).replace('torch.', '') for d in SUPPORTED)}; convert it first",
                None,
            )
        self._schemas[key] = want
        return stacked


def compact(t: torch.Tensor) -> torch.Tensor:
    """A copy with standard strides (``contiguous()`` may keep odd strides of size-1 dimensions)."""
    return torch.empty(t.shape, dtype=t.dtype).copy_(t)


class _Mismatch(Exception):
    """The grouped fast path does not apply to this buffer; use the per-metric path."""


def _plan_groups(
    names: tuple[str, ...], first: Record
) -> list[tuple[tuple[str, ...], torch.dtype, tuple[int, ...]]]:
    """Group metric names by the dtype, shape and device of the first record (empty when a value
    is not a tensor)."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name in names:
        t = first.tensors.get(name)
        if not isinstance(t, torch.Tensor):
            return []
        groups.setdefault((t.dtype, tuple(t.shape), t.device), []).append(name)
    return [(tuple(g), key[0], key[1]) for key, g in groups.items()]


def _as_tensor(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _conforms(value: Any, dtype: torch.dtype, shape: tuple[int, ...], device: torch.device) -> bool:
    t = _as_tensor(value)
    return t is not None and t.dtype == dtype and tuple(t.shape) == shape and t.device == device


def _desc(dtype: torch.dtype, shape: Any) -> str:
    return f"{str(dtype).replace('torch.', '')}{list(shape)}"
