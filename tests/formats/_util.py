"""Shared helpers for the format tests: a fast trainer and a scripted rollout module."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def trainer(callbacks: Sequence[Any] = (), **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    options.update(kwargs)
    return pl.Trainer(**options)


class ScriptedRollouts(pl.LightningModule):
    """Returns a scripted training-step output per batch and takes one (no-op) optimizer step."""

    def __init__(self, script: Sequence[dict[str, Any]], *, manual: bool = True) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.script = list(script)
        self.automatic_optimization = not manual

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        loss = self.layer(torch.ones(1, 1)).sum()
        out = dict(self.script[batch_idx])
        if self.automatic_optimization:
            out["loss"] = loss
            return out
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        out["loss"] = loss.detach()
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(list(range(len(self.script))), batch_size=1)
