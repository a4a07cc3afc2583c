"""``TinyLM``: a LightningModule around :class:`~probes.demos.tiny_gpt.TinyGPT` that trains on CPU
in seconds, with automatic or manual optimization and optional gradient accumulation.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from probes.demos.corpus import WindowDataset, make_corpus
from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer

__all__ = ["ContinuedLM", "TinyLM", "corpus_loader", "lm_loss"]


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; ``labels`` are already shifted, -100 is ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


class TinyLM(pl.LightningModule):
    """The tiny reference LM.

    Args:
        config: model shape; defaults to :class:`GPTConfig` (about 350k parameters).
        lr: AdamW learning rate.
        manual: use manual optimization (one ``optimizer.step()`` per batch).
        accumulate: with ``manual=True``, step every ``accumulate`` batches.
    """

    def __init__(
        self,
        config: Optional[GPTConfig] = None,
        *,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        manual: bool = False,
        accumulate: int = 1,
    ) -> None:
        super().__init__()
        self.model = TinyGPT(config)
        self.tokenizer = ByteTokenizer()
        self.lr = lr
        self.weight_decay = weight_decay
        self.automatic_optimization = not manual
        self.accumulate = accumulate
        self.losses: list[float] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def training_step(self, batch: Any, batch_idx: int) -> Optional[torch.Tensor]:
        loss = lm_loss(self(batch["input_ids"], batch.get("attention_mask")), batch["labels"])
        self.losses.append(float(loss.detach()))
        self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, batch_size=len(batch["labels"]))
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        self.manual_backward(loss / self.accumulate)
        if (batch_idx + 1) % self.accumulate == 0:
            opt.step()
            opt.zero_grad()
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class ContinuedLM(TinyLM):
    """A :class:`TinyLM` resuming from given weights and AdamW state, at learning rate ``lr``:
    training continues and new facts arrive (the priming example and study)."""

    def __init__(
        self, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any], lr: float,
        config: Optional[GPTConfig] = None,
    ) -> None:
        super().__init__(config, lr=lr)
        self.load_state_dict(weights)
        self._optimizer_state = optimizer_state

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = super().configure_optimizers()
        optimizer.load_state_dict(copy.deepcopy(self._optimizer_state))
        for group in optimizer.param_groups:
            group["lr"] = self.lr
        return optimizer


def corpus_loader(
    *, n_windows: int = 512, batch_size: int = 16, block_size: int = 64, seed: int = 0, text: Optional[str] = None
) -> DataLoader:
    """A deterministic (unshuffled) loader of windows from the synthetic themed corpus."""
    text = text if text is not None else make_corpus(seed=seed)
    ds = WindowDataset(ByteTokenizer().encode(text), block_size, n_windows, seed=seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=False)
