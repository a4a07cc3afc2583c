"""Warnings from probes, once per process group: only rank 0 warns when torch.distributed runs."""

from __future__ import annotations

import logging
import warnings

import torch.distributed as dist

__all__ = ["rank_zero_info", "rank_zero_warn"]


def rank_zero_warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with ``message`` on rank 0 only (on every process when torch.distributed is not running)."""
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    warnings.warn(message, category, stacklevel=3)


def rank_zero_info(message: str) -> None:
    """Log ``message`` at INFO level (logger ``probes``) on rank 0 only."""
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    logging.getLogger("probes").info(message)
