"""Exposure counting: occurrences of token patterns inside a batch of token ids, on the device.

A pattern occurs at position ``t`` of a row when ``ids[t + k] == pattern[k]`` for every ``k`` and
every one of those positions is a real token (not padding). Every start position counts, so
overlapping occurrences are all counted ("aa" occurs 3 times in "aaaa").

The comparison is vectorized: one ``[rows, T, P]`` boolean comparison per pattern position (a
convolution-style sweep over the longest pattern's length), with rows processed in chunks so the
working memory stays bounded. Nothing leaves the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F

__all__ = ["count_occurrences", "occurrences_per_row", "pack_patterns"]

_SENTINEL = -1  # replaces padding; never equal to a pattern token (patterns are >= 0)


def pack_patterns(
    patterns: Sequence[Sequence[int]], *, device: Union[str, torch.device, None] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack patterns of different lengths into ``([P, M] int64 padded with -1, [P] int64 lengths)``.

    Raises:
        ValueError: no patterns, an empty pattern, or a negative token id.
    """
    if len(patterns) == 0:
        raise ValueError("Expected at least one pattern to count, got none.")
    lengths = [len(p) for p in patterns]
    for i, p in enumerate(patterns):
        if len(p) == 0:
            raise ValueError(f"Pattern #{i} is empty; every pattern needs at least one token id.")
        if any(int(t) < 0 for t in p):
            raise ValueError(f"Pattern #{i} has a negative token id ({list(p)}); token ids are >= 0.")
    width = max(lengths)
    packed = torch.full((len(patterns), width), _SENTINEL, dtype=torch.long)
    for i, p in enumerate(patterns):
        packed[i, : len(p)] = torch.as_tensor([int(t) for t in p], dtype=torch.long)
    return packed.to(device), torch.as_tensor(lengths, dtype=torch.long, device=device)


def occurrences_per_row(
    ids: torch.Tensor,
    patterns: torch.Tensor,
    lengths: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    pad_id: Optional[int] = None,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """Occurrences of every pattern in every row: ``[B, P]`` int64 on the device of ``ids``.

    Args:
        ids: ``[B, T]`` (or ``[T]``) integer token ids.
        patterns, lengths: from :func:`pack_patterns` (moved to ``ids.device`` if needed).
        mask: optional ``[B, T]`` attention mask; positions where it is 0 are padding.
        pad_id: optional id treated as padding wherever it appears (use only when that id is not
            a real token inside patterns).
        max_elements: bound on the ``rows x T x P`` booleans compared at once.

    Raises:
        ValueError: ``ids`` not 1-D/2-D integers, or a mask of another shape.
    """
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
        mask = mask.unsqueeze(0) if mask is not None and mask.dim() == 1 else mask
    if ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(
            f"Expected token ids of shape [batch, seq] with an integer dtype, got {ids.dtype} of shape"
            f" {list(ids.shape)}; pass the batch's input ids (set the batch key to the right entry)."
        )
    if mask is not None and mask.shape != ids.shape:
        raise ValueError(f"Expected the mask to have the shape of the ids {list(ids.shape)}, got {list(mask.shape)}.")
    device = ids.device
    patterns = patterns.to(device)
    lengths = lengths.to(device)
    x = ids.long()
    valid = None if mask is None else mask.bool()
    if pad_id is not None:
        not_pad = x != int(pad_id)
        valid = not_pad if valid is None else valid & not_pad
    if valid is not None:
        x = x.masked_fill(~valid, _SENTINEL)
    n_rows, width = x.shape
    n_pat, plen = patterns.shape
    x = F.pad(x, (0, plen - 1), value=_SENTINEL)  # [B, T + M - 1]: a match never runs off the row
    inactive = torch.arange(plen, device=device)[:, None] >= lengths[None, :]  # [M, P]
    chunk = max(1, max_elements // max(1, width * n_pat))
    out = []
    for r0 in range(0, n_rows, chunk):
        xs = x[r0 : r0 + chunk]
        hit = torch.ones((xs.shape[0], width, n_pat), dtype=torch.bool, device=device)
        for k in range(plen):
            hit &= (xs[:, k : k + width, None] == patterns[None, None, :, k]) | inactive[k]
        out.append(hit.sum(dim=1))
    return torch.cat(out, dim=0)


def count_occurrences(
    ids: torch.Tensor,
    patterns: torch.Tensor,
    lengths: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    pad_id: Optional[int] = None,
) -> torch.Tensor:
    """Total occurrences of every pattern in the batch: ``[P]`` int64 (see :func:`occurrences_per_row`)."""
    return occurrences_per_row(ids, patterns, lengths, mask=mask, pad_id=pad_id).sum(dim=0)
