"""Log-probabilities and ranks of target tokens from selected logit rows."""

from __future__ import annotations

import torch

__all__ = ["target_logprobs", "target_ranks"]


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[i, targets[i]] for each row, computed in float32.

    Args:
        logits: ``[N, V]`` unnormalised scores.
        targets: ``[N]`` int64 token ids.
    """
    logits = logits.float()
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    return picked - torch.logsumexp(logits, dim=1)


def target_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target in its row: 1 + the number of strictly larger logits.

    Ties are resolved in the target's favour, so a target sharing the top logit has rank 1.
    """
    logits = logits.float()
    picked = logits.gather(1, targets.unsqueeze(1))
    return (logits > picked).sum(dim=1) + 1
