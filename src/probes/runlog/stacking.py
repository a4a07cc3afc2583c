"""The dtypes the run log stores, and copying a stacked column out with standard strides.

Records are validated and each metric group is stacked into one row per record at
``RunWriter.write()`` (:mod:`probes.runlog.validate`); a flush stacks the rows of each group into
one tensor (one host transfer per group) and :func:`compact` copies each metric out of it.
"""

from __future__ import annotations

import torch

from probes.runlog import layout as fmt

__all__ = ["SUPPORTED", "compact", "st_dtype"]

SUPPORTED: dict[torch.dtype, str] = {
    getattr(torch, tname): st
    for st, (_, tname) in fmt.DTYPES.items()
    if isinstance(getattr(torch, tname, None), torch.dtype)
}
"""torch dtype -> safetensors dtype name, for every dtype the run log stores."""


def st_dtype(dtype: torch.dtype) -> str:
    """The safetensors name of a supported torch dtype."""
    return SUPPORTED[dtype]


def compact(t: torch.Tensor) -> torch.Tensor:
    """A copy with standard strides (``contiguous()`` may keep odd strides of size-1 dimensions)."""
    return torch.empty(t.shape, dtype=t.dtype).copy_(t)
