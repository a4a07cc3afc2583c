"""Memorization and priming scores (Sun et al. 2025, arXiv 2504.09522), as pure tensor math.

For a learning sample with keyword ``k``, learning context ``x`` and priming prefixes ``x_j``,
with ``P_t`` the keyword probability at reading ``t`` and ``P_0`` the baseline reading:

* ``S_mem = P_t(k | x) / P_0(k | x)``
* ``S_prime = mean_j P_t(k | x_j) / P_0(k | x_j)`` (arithmetic mean of per-prefix ratios)

Probabilities enter the ratios clamped from below at ``p_floor`` (default :data:`DEFAULT_P_FLOOR`,
1e-30): ``ratio = max(P_t, floor) / max(P_0, floor)``. This prevents a division by zero when a
probability underflows to 0, makes two floored zeros a ratio of 1 (no change), and bounds every
ratio by ``1 / floor``, which float64 holds without overflow. Probabilities above the floor are
used as they are: the floor is far below any probability a float32 softmax reports as non-zero
for a short keyword, so it changes nothing in ordinary use.

Everything is computed in float64 from natural-log probabilities, on the input's device. A NaN
baseline (not captured yet) gives NaN scores for that sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["DEFAULT_P_FLOOR", "PrimingScores", "group_median", "group_slots", "priming_scores"]

DEFAULT_P_FLOOR = 1e-30


@dataclass(frozen=True)
class PrimingScores:
    """Per-sample scores, float64 tensors of shape ``[n_samples]`` (bool where noted).

    Attributes:
        p_learn: current P(keyword | learning context).
        p_before: baseline P(keyword | learning context); NaN before it is captured.
        s_mem: memorization score.
        s_prime: priming score (mean of per-prefix ratios).
        log10_s_mem, log10_s_prime: base-10 logarithms of the two scores.
        median_prime_ratio: median over prefixes of the per-prefix ratio (robust to one prefix).
        delta_p_learn: ``P_t - P_0`` on the learning context (unclamped).
        delta_p_prime: mean over prefixes of ``P_t - P_0`` (unclamped).
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


def _check_floor(p_floor: float) -> float:
    if not isinstance(p_floor, (int, float)) or isinstance(p_floor, bool) or not 0.0 < p_floor < 1.0:
        raise ValueError(f"Expected `p_floor` in (0, 1), got {p_floor!r}; the default is {DEFAULT_P_FLOOR}.")
    return float(p_floor)


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


def priming_scores(
    logp_learn: torch.Tensor,
    logp_prefix: torch.Tensor,
    base_learn: torch.Tensor,
    base_prefix: torch.Tensor,
    prefix_owner: torch.Tensor,
    *,
    p_floor: float = DEFAULT_P_FLOOR,
    threshold: float = 1e-3,
    prefix_slot: Optional[torch.Tensor] = None,
    max_prefixes: Optional[int] = None,
) -> PrimingScores:
    """Scores from current and baseline natural-log probabilities.

    Args:
        logp_learn: ``[S]`` current ln P(keyword | learning context) per sample.
        logp_prefix: ``[J]`` current ln P(keyword | prefix) for every prefix of every sample.
        base_learn, base_prefix: the same at the baseline reading (NaN where not captured).
        prefix_owner: ``[J]`` int64 sample index of each prefix.
        p_floor: lower clamp of probabilities inside ratios (see module docstring).
        threshold: a baseline below it marks the sample as surprising.
        prefix_slot, max_prefixes: the fixed layout of prefixes (:func:`group_slots` and the
            largest prefix count), to avoid a device-to-host read; computed when omitted.

    Raises:
        ValueError: a floor or threshold outside (0, 1), or mismatched shapes.
    """
    floor = _check_floor(p_floor)
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
    lf = math.log(floor)
    cur_l, base_l = logp_learn.double(), base_learn.double()
    cur_p, base_p = logp_prefix.double(), base_prefix.double()
    owner = prefix_owner.long()

    log_s_mem = cur_l.clamp_min(lf) - base_l.clamp_min(lf)
    ratio = torch.exp(cur_p.clamp_min(lf) - base_p.clamp_min(lf))  # [J]
    counts = _group_counts(owner, n).to(ratio.dtype)
    s_prime = torch.zeros(n, dtype=ratio.dtype, device=ratio.device).index_add_(0, owner, ratio) / counts
    dp = torch.exp(cur_p) - torch.exp(base_p)
    delta_p_prime = torch.zeros(n, dtype=dp.dtype, device=dp.device).index_add_(0, owner, dp) / counts
    p_before = torch.exp(base_l)
    has_baseline = ~torch.isnan(base_l)
    return PrimingScores(
        p_learn=torch.exp(cur_l),
        p_before=p_before,
        s_mem=torch.exp(log_s_mem),
        s_prime=s_prime,
        log10_s_mem=log_s_mem / math.log(10.0),
        log10_s_prime=torch.log10(s_prime),
        median_prime_ratio=group_median(ratio, owner, n, slots=prefix_slot, width=max_prefixes),
        delta_p_learn=torch.exp(cur_l) - p_before,
        delta_p_prime=delta_p_prime,
        surprising=has_baseline & (p_before < float(threshold)),
        has_baseline=has_baseline,
    )
