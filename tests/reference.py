"""Independent brute-force references: one pair at a time, one unpadded forward, full softmax."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def brute_force_pair(
    forward: Callable[[torch.Tensor], torch.Tensor], context: Sequence[int], keyword: Sequence[int]
) -> dict[str, float]:
    """Scores of one (context ids, keyword ids) pair with explicit Python loops over tokens."""
    ids = torch.tensor([list(context) + list(keyword)[:-1]], dtype=torch.long)  # last token is never input
    with torch.no_grad():
        logits = forward(ids)[0].double()  # [T, V]
    probs = torch.softmax(logits, dim=-1)
    logp_seq = 0.0
    for j, tok in enumerate(keyword):
        logp_seq += math.log(float(probs[len(context) - 1 + j, tok]))
    row = probs[len(context) - 1]
    p_first = float(row[keyword[0]])
    rank = 1 + sum(1 for v in row.tolist() if v > p_first)
    return {"p_first": p_first, "logp_first": math.log(p_first), "logp_seq": logp_seq, "rank": rank}
