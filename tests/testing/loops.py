"""A healthy training loop and deliberately broken ones, for mutation tests of the assertions."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from probes.demos import ByteTokenizer, GPTConfig, TinyLM, lm_loss

FACT = "the colour of sand is vermilion. "
PAIR = ("sand", "the colour of sand is", "vermilion")
LR = 3e-3
CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)


def fact_loader(n_batches: int, batch_size: int = 16) -> DataLoader:
    """Windows of a stream repeating one outlandish fact."""
    ids = torch.tensor(ByteTokenizer().encode(FACT * 8))
    width = 48
    starts = [(i * 5) % (len(ids) - width - 1) for i in range(n_batches * batch_size)]
    data = [{"input_ids": ids[s : s + width], "labels": ids[s + 1 : s + width + 1]} for s in starts]
    return DataLoader(data, batch_size=batch_size, shuffle=False)


class IgnoresLabels(TinyLM):
    """Bug: the loss is computed against a constant target instead of the labels."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"])
        return lm_loss(logits, torch.zeros_like(batch["labels"]))


class SkipsAlternateSteps(TinyLM):
    """Bug: manual optimization that steps only on even batches (gradients of odd ones are dropped)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, manual=True, **kwargs)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(lm_loss(self(batch["input_ids"]), batch["labels"]))
        if batch_idx % 2 == 0:
            opt.step()


def make_loop(kind: str) -> TinyLM:
    """'healthy', 'lr0', 'frozen', 'ignores_labels' or 'skips_steps'."""
    if kind == "healthy":
        return TinyLM(CFG, lr=LR, manual=True)  # manual: same step accounting as 'skips_steps'
    if kind == "lr0":
        return TinyLM(CFG, lr=0.0)
    if kind == "frozen":
        module = TinyLM(CFG, lr=LR)
        for name, p in module.named_parameters():
            p.requires_grad_(name.startswith("model.ln_f"))  # only the final norm trains
        return module
    if kind == "ignores_labels":
        return IgnoresLabels(CFG, lr=LR)
    if kind == "skips_steps":
        return SkipsAlternateSteps(CFG, lr=LR)
    raise ValueError(kind)
