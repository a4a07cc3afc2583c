"""The token budget of a scoring micro-batch, chosen per device when the option is ``"auto"``.

A scoring pass packs its rows into micro-batches of at most ``token_budget`` padded tokens. Too
small a budget wastes calls; too large a one leaves the CPU's caches and, with full logits, fills
memory with ``budget x vocabulary`` floats. The rule for ``token_budget="auto"`` (the default):

* **CPU**: 8,192 tokens. Measured on the GPT-2-shaped benchmark model (4 layers, width 256,
  vocabulary 5,000; 256 pairs, contexts of 24 and 128 tokens; one thread): 4,096-8,192 were fastest,
  16,384 (the earlier fixed default) 1.3-1.45x slower, 2,048 up to 1.8x slower on long contexts.
* **CUDA**: 32,768 tokens, or what fits a tenth of the device's free memory at setup if less
  (``torch.cuda.mem_get_info``); a larger batch keeps a GPU busy. Not measured here (no GPU).
* **With full logits** (no output head restricted to the read positions: ``head=None``, a custom
  ``logits_fn``, or a head that failed its check): at most as many tokens as keep one micro-batch's
  float32 logits and their log-softmax under 128 MiB on the CPU (2,048 tokens for a vocabulary of
  5,000, which measured 1.7x faster than 16,384 there) or under a twentieth of the free memory on
  CUDA; never below 256 tokens.

Budgets are rounded down to a power of two. An int given by the user is used as it is.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import torch

__all__ = ["AUTO_CPU", "AUTO_CUDA", "TokenBudget", "resolve_token_budget"]

TokenBudget = Union[int, Literal["auto"]]

AUTO_CPU = 8192
AUTO_CUDA = 32768
_CPU_LOGITS_BYTES = 128 * 2**20
_FLOOR = 256


def _pow2_floor(n: float) -> int:
    return 1 << max(int(n), 1).bit_length() - 1


def _free_cuda_bytes(device: torch.device) -> Optional[int]:
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError, ValueError):
        return None
    return int(free)


def resolve_token_budget(
    option: TokenBudget, *, device: torch.device, vocab_size: Optional[int], full_logits: bool
) -> int:
    """The budget in padded tokens for a micro-batch on ``device`` (see the module docstring).

    Args:
        option: a positive int (returned as it is) or ``"auto"``.
        device: where the model's parameters are.
        vocab_size: the model's vocabulary (None: unknown, treated as 50,000).
        full_logits: whether the forward returns logits at every position.
    """
    if option != "auto":
        return int(option)
    vocab = vocab_size or 50_000
    free = _free_cuda_bytes(device) if device.type == "cuda" else None
    if free is not None:
        budget = min(AUTO_CUDA, _pow2_floor(free / 10 / 4096))  # ~4 KiB of activations per token, generously
        logits_bytes = free / 20
    else:
        budget = AUTO_CPU
        logits_bytes = _CPU_LOGITS_BYTES
    if full_logits:
        budget = min(budget, _pow2_floor(logits_bytes / (vocab * 4 * 2)))  # float32 logits and log-softmax
    return max(_FLOOR, budget)
