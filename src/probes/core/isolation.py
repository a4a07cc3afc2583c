"""``isolated_eval``: a probe's pass leaves training untouched (modes, gradients, RNG state)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["isolated_eval"]

@contextmanager
def isolated_eval(module: nn.Module) -> Iterator[None]:
    """Run a block in eval mode under ``torch.no_grad()``, then restore everything.

    Restores each submodule's own ``training`` flag (not just the root's), the CPU RNG state and,
    when CUDA is initialised, every CUDA device's RNG state. The block computes no gradients, so
    ``.grad`` of every parameter is untouched.
    """
    modes = [(m, m.training) for m in module.modules()]
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        module.eval()
        with torch.no_grad():
            yield
    finally:
        for m, was_training in modes:
            m.training = was_training
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)

