"""Log-probabilities and ranks of target tokens from selected logit rows."""

from __future__ import annotations

import torch

__all__ = ["checked_target_logprobs", "target_logprobs", "target_ranks"]


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[i, targets[i]] for each row, computed in float32.

    Args:
        logits: ``[N, V]`` unnormalised scores.
        targets: ``[N]`` int64 token ids.
    """
    return checked_target_logprobs(logits, targets)[0]


def checked_target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`target_logprobs` and, per row, whether the row's output was unusable: a NaN or
    ``+inf`` anywhere in it makes the normaliser non-finite, or the target's own logit is NaN. A
    ``-inf`` logit (a token the model rules out) is usable output.

    Returns:
        ``(logprobs [N] float32, broken [N] bool)``.
    """
    logits = logits.float()
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    lse = torch.logsumexp(logits, dim=1)
    return picked - lse, ~torch.isfinite(lse) | torch.isnan(picked)


def target_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target in its row: 1 + the number of strictly larger logits.

    Ties are resolved in the target's favour, so a target sharing the top logit has rank 1.
    """
    logits = logits.float()
    picked = logits.gather(1, targets.unsqueeze(1))
    return (logits > picked).sum(dim=1) + 1
