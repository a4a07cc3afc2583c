"""Entropy, effective number and KL divergence of discrete distributions (pure torch).

Every function follows the conventions of :func:`scipy.stats.entropy`:

* inputs are non-negative weights along ``dim``; they are normalised to sum to one first, so
  counts can be passed directly;
* ``0 * log 0 = 0``;
* an all-zero (or NaN-containing) distribution gives NaN;
* ``KL(p || q)`` is ``inf`` when ``p`` puts mass where ``q`` has none.

All results are float tensors on the input's device, reduced over ``dim``; nothing is moved to
the host.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = [
    "distribution_summary",
    "effective_number",
    "entropy",
    "entropy_bits",
    "kl_divergence",
    "normalize",
    "normalized_entropy",
]


def _check_base(base: Optional[float]) -> None:
    if base is not None and (not isinstance(base, (int, float)) or base <= 0 or base == 1):
        raise ValueError(f"Expected `base` to be a positive number other than 1 (or None for nats), got {base!r}.")


def normalize(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``p / p.sum(dim)`` in float (at least float32); an all-zero slice becomes NaN.

    Raises:
        ValueError: when ``p`` has a negative entry.
    """
    if not isinstance(p, torch.Tensor):
        p = torch.as_tensor(p)
    p = p.float() if not p.is_floating_point() or p.dtype in (torch.float16, torch.bfloat16) else p
    if bool((p < 0).any()):
        raise ValueError(
            f"Expected non-negative probabilities or counts, got a minimum of {p.min().tolist()}."
            " Pass probabilities (or counts), not log-probabilities."
        )
    total = p.sum(dim=dim, keepdim=True)
    return p / total  # 0/0 -> NaN, as scipy


def entropy(p: torch.Tensor, *, base: Optional[float] = None, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``-sum p log p`` of the normalised weights ``p`` along ``dim``.

    Args:
        p: non-negative weights (probabilities or counts).
        base: logarithm base; None for nats, 2 for bits.
        dim: the category axis.

    Returns:
        The entropy with ``dim`` reduced; NaN where ``p`` sums to zero.

    Example::

        entropy(torch.tensor([0.5, 0.5]), base=2)  # tensor(1.)
    """
    _check_base(base)
    q = normalize(p, dim)
    h = torch.special.entr(q).sum(dim=dim)
    return h / math.log(base) if base is not None else h


def entropy_bits(p: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in bits (``entropy(p, base=2)``)."""
    return entropy(p, base=2, dim=dim)


def normalized_entropy(p: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Entropy divided by its maximum ``log K`` (``K`` = size of ``dim``), in ``[0, 1]``.

    With a single category (``K = 1``) the distribution is necessarily concentrated, and the
    result is 0 (not ``0 / 0``); an all-zero slice still gives NaN.
    """
    k = p.shape[dim]
    h = entropy(p, dim=dim)
    if k <= 1:
        return h * 0.0  # keeps NaN for empty slices, else exactly 0
    return h / math.log(k)


def effective_number(p: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Effective number of categories ``exp(H)`` (Hill number of order 1), in ``[1, K]``."""
    return entropy(p, dim=dim).exp()


def kl_divergence(p: torch.Tensor, q: torch.Tensor, *, base: Optional[float] = None, dim: int = -1) -> torch.Tensor:
    """``KL(p || q) = sum p log(p / q)`` of the normalised weights, as ``scipy.stats.entropy(p, q)``.

    Args:
        p: the distribution whose divergence is measured (e.g. the current one).
        q: the reference distribution (e.g. the first one), same shape as ``p``.
        base: logarithm base; None for nats.
        dim: the category axis.

    Returns:
        Non-negative values; ``inf`` where ``p > 0`` and ``q == 0``; NaN where either sums to 0.

    Raises:
        ValueError: on mismatched shapes or negative entries.
    """
    _check_base(base)
    if p.shape != q.shape:
        raise ValueError(f"Expected `p` and `q` of the same shape, got {list(p.shape)} and {list(q.shape)}.")
    pn, qn = normalize(p, dim), normalize(q.to(p.device), dim)
    ratio_log = torch.log(pn) - torch.log(qn)  # -inf/+inf/NaN resolved below
    terms = torch.where(pn > 0, pn * ratio_log, torch.zeros_like(pn))
    terms = torch.where((pn > 0) & (qn == 0), torch.full_like(pn, math.inf), terms)
    terms = torch.where(torch.isnan(pn) | torch.isnan(qn), torch.full_like(pn, math.nan), terms)
    kl = terms.sum(dim=dim)
    return kl / math.log(base) if base is not None else kl


def distribution_summary(p: torch.Tensor, reference: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Every scalar statistic of one distribution ``p`` of shape ``[K]`` (weights or counts).

    Returns a dict of 0-dim tensors on ``p``'s device: ``entropy_nats``, ``entropy_bits``,
    ``norm_entropy``, ``eff_formats`` (``exp(H)``), ``dominant`` (int64 argmax, -1 when ``p`` is
    empty or all zero), ``dominant_share`` and ``kl_from_first`` (``KL(p || reference)``, NaN
    without a reference). Statistics of an all-zero ``p`` are NaN.
    """
    if p.dim() != 1 or p.numel() == 0:
        raise ValueError(f"Expected a 1-D distribution with at least one category, got shape {list(p.shape)}.")
    q = normalize(p)
    valid = torch.isfinite(q).all()
    h = torch.special.entr(q).sum()
    k = q.numel()
    nan = torch.full((), math.nan, device=q.device, dtype=q.dtype)
    dominant = torch.where(valid, torch.argmax(torch.nan_to_num(q, nan=-1.0)), torch.tensor(-1, device=q.device))
    out = {
        "entropy_nats": h,
        "entropy_bits": h / math.log(2),
        "norm_entropy": h / math.log(k) if k > 1 else h * 0.0,
        "eff_formats": h.exp(),
        "dominant": dominant.to(torch.int64),
        "dominant_share": torch.where(valid, q.max() if k else nan, nan),
        "kl_from_first": kl_divergence(q, reference.to(q.device, q.dtype)) if reference is not None else nan,
    }
    return out
