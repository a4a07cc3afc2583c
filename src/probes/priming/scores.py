"""Memorization and priming scores (Sun et al. 2025, arXiv 2504.09522), as pure tensor math.

For a learning sample with keyword ``k``, learning context ``x`` and priming prefixes ``x_j``,
with ``P_t`` the keyword probability at reading ``t`` and ``P_0`` the baseline reading:

* ``S_mem = P_t(k | x) / P_0(k | x)``
* ``S_prime = mean_j P_t(k | x_j) / P_0(k | x_j)`` (arithmetic mean of per-prefix ratios)

Everything is computed in log space, in float64, from natural-log probabilities, on the input's
device, with **no floor**: ``log S_mem = log P_t - log P_0`` and ``log S_prime = logsumexp_j(log
P_t(k | x_j) - log P_0(k | x_j)) - log J``, so a never-seen keyword whose ``P_0`` is 1e-40 gets its
exact ratio. ``s_mem`` and ``s_prime`` are ``exp`` of those logs: ``inf`` only where float64
overflows (a ratio above about 1e308); the ``log10_*`` metrics are always exact. A NaN baseline
(not captured yet) or a NaN reading (non-finite model output) gives NaN scores for that sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["PrimingScores", "group_logmeanexp", "group_median", "group_slots", "priming_scores"]


@dataclass(frozen=True)
class PrimingScores:
    """Per-sample scores, float64 tensors of shape ``[n_samples]`` (bool where noted).

    Attributes:
        p_learn: current P(keyword | learning context).
        p_before: baseline P(keyword | learning context); NaN before it is captured.
        s_mem: memorization score (``exp`` of its log; ``inf`` only on float64 overflow).
        s_prime: priming score (mean of per-prefix ratios).
        log10_s_mem, log10_s_prime: base-10 logarithms of the two scores, computed in log space.
        median_prime_ratio: median over prefixes of the per-prefix ratio (robust to one prefix).
        delta_p_learn: ``P_t - P_0`` on the learning context (an absolute change, not a ratio).
        delta_p_prime: mean over prefixes of ``P_t - P_0``.
        surprising: baseline below the threshold (False without a baseline).
        has_baseline: whether a baseline exists.
    """

    p_learn: torch.Tensor
    p_before: torch.Tensor
    s_mem: torch.Tensor
    s_prime: torch.Tensor
    log10_s_mem: torch.Tensor
    log10_s_prime: torch.Tensor
    median_prime_ratio: torch.Tensor
    delta_p_learn: torch.Tensor
    delta_p_prime: torch.Tensor
    surprising: torch.Tensor
    has_baseline: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _group_counts(owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Entries per group, int64. ``index_add_`` rather than ``bincount``: on CUDA ``bincount``
    reads the maximum back to the host, which would stall every reading."""
    counts = torch.zeros(n_groups, dtype=torch.long, device=owner.device)
    return counts.index_add_(0, owner, torch.ones_like(owner))


def group_slots(owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Position of each entry within its group (0-based, in order of appearance)."""
    order = torch.argsort(owner, stable=True)
    counts = _group_counts(owner, n_groups)
    starts = torch.cumsum(counts, 0) - counts
    slots = torch.empty_like(owner)
    slots[order] = torch.arange(owner.numel(), device=owner.device) - starts[owner[order]]
    return slots


def group_median(
    values: torch.Tensor,
    owner: torch.Tensor,
    n_groups: int,
    *,
    slots: Optional[torch.Tensor] = None,
    width: Optional[int] = None,
) -> torch.Tensor:
    """Median of ``values`` within each group (mean of the two middle values for an even count).

    Groups with no entries, or with a NaN entry, give NaN. Pass ``slots`` (from
    :func:`group_slots`) and ``width`` (the largest group size) when the grouping is fixed, so
    no value is read back to the host.
    """
    counts = _group_counts(owner, n_groups)
    if width is None:
        width = int(counts.max()) if owner.numel() else 0
    out = torch.full((n_groups,), math.nan, dtype=values.dtype, device=values.device)
    if width == 0:
        return out
    if slots is None:
        slots = group_slots(owner, n_groups)
    table = torch.full((n_groups, width), math.inf, dtype=values.dtype, device=values.device)
    table[owner, slots] = values
    ordered = table.sort(dim=1).values
    lo = ((counts - 1).clamp_min(0) // 2).unsqueeze(1)
    hi = (counts // 2).clamp_max(width - 1).unsqueeze(1)
    med = (ordered.gather(1, lo) + ordered.gather(1, hi)).squeeze(1) / 2
    n_nan = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    has_nan = n_nan.index_add_(0, owner, torch.isnan(values).to(values.dtype)) > 0
    return torch.where((counts == 0) | has_nan, out, med)


def group_logmeanexp(logs: torch.Tensor, owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``log(mean_j exp(logs_j))`` within each group, without overflow or underflow.

    A group containing a NaN gives NaN; a group whose entries are all ``-inf`` gives ``-inf``; an
    empty group gives NaN.
    """
    counts = _group_counts(owner, n_groups).to(logs.dtype)
    peak = torch.full((n_groups,), -math.inf, dtype=logs.dtype, device=logs.device)
    peak = peak.scatter_reduce(0, owner, logs, reduce="amax", include_self=True)
    finite_peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros(n_groups, dtype=logs.dtype, device=logs.device)
    total = total.index_add_(0, owner, torch.exp(logs - finite_peak[owner]))
    out = torch.log(total / counts) + finite_peak
    has_nan = torch.zeros(n_groups, dtype=logs.dtype, device=logs.device).index_add_(
        0, owner, torch.isnan(logs).to(logs.dtype)
    )
    out = torch.where(peak == math.inf, torch.full_like(out, math.inf), out)
    return torch.where((has_nan > 0) | (counts == 0), torch.full_like(out, math.nan), out)


def priming_scores(
    logp_learn: torch.Tensor,
    logp_prefix: torch.Tensor,
    base_learn: torch.Tensor,
    base_prefix: torch.Tensor,
    prefix_owner: torch.Tensor,
    *,
    threshold: float = 1e-3,
    prefix_slot: Optional[torch.Tensor] = None,
    max_prefixes: Optional[int] = None,
) -> PrimingScores:
    """Scores from current and baseline natural-log probabilities (see the module docstring).

    Args:
        logp_learn: ``[S]`` current ln P(keyword | learning context) per sample.
        logp_prefix: ``[J]`` current ln P(keyword | prefix) for every prefix of every sample.
        base_learn, base_prefix: the same at the baseline reading (NaN where not captured).
        prefix_owner: ``[J]`` int64 sample index of each prefix.
        threshold: a baseline below it marks the sample as surprising.
        prefix_slot, max_prefixes: the fixed layout of prefixes (:func:`group_slots` and the
            largest prefix count), to avoid a device-to-host read; computed when omitted.

    Raises:
        ValueError: a threshold outside (0, 1), or mismatched shapes.
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"Expected `threshold` in (0, 1), got {threshold!r}.")
    n = logp_learn.shape[0]
    if base_learn.shape != logp_learn.shape or base_prefix.shape != logp_prefix.shape:
        raise ValueError(
            f"Baseline shapes {list(base_learn.shape)}, {list(base_prefix.shape)} do not match current"
            f" shapes {list(logp_learn.shape)}, {list(logp_prefix.shape)}."
        )
    if prefix_owner.shape != logp_prefix.shape:
        raise ValueError(f"Expected `prefix_owner` of shape {list(logp_prefix.shape)}, got {list(prefix_owner.shape)}.")
    cur_l, base_l = logp_learn.double(), base_learn.double()
    cur_p, base_p = logp_prefix.double(), base_prefix.double()
    owner = prefix_owner.long()

    log_s_mem = cur_l - base_l
    log_ratio = cur_p - base_p  # [J]
    log_s_prime = group_logmeanexp(log_ratio, owner, n)
    counts = _group_counts(owner, n).to(cur_p.dtype)
    dp = torch.exp(cur_p) - torch.exp(base_p)
    delta_p_prime = torch.zeros(n, dtype=dp.dtype, device=dp.device).index_add_(0, owner, dp) / counts
    p_before = torch.exp(base_l)
    has_baseline = ~torch.isnan(base_l)
    ln10 = math.log(10.0)
    return PrimingScores(
        p_learn=torch.exp(cur_l),
        p_before=p_before,
        s_mem=torch.exp(log_s_mem),
        s_prime=torch.exp(log_s_prime),
        log10_s_mem=log_s_mem / ln10,
        log10_s_prime=log_s_prime / ln10,
        median_prime_ratio=group_median(torch.exp(log_ratio), owner, n, slots=prefix_slot, width=max_prefixes),
        delta_p_learn=torch.exp(cur_l) - p_before,
        delta_p_prime=delta_p_prime,
        surprising=has_baseline & (base_l < math.log(float(threshold))),
        has_baseline=has_baseline,
    )
