"""IgnoreTopK: exactly k of every tensor reverted, the largest updates, the rest updated normally."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from probes.callbacks.ignore_topk import IgnoreTopK, n_reverted, revert_top_updates

LR = 0.1


class MLP(pl.LightningModule):
    def __init__(self, optimizer: str = "sgd") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 50), nn.Tanh(), nn.Linear(50, 3))
        self.optimizer = optimizer

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=LR, foreach=False)
        return torch.optim.AdamW(self.parameters(), lr=1e-2, foreach=False)


class StepRecorder(pl.Callback):
    """Weights and gradients before each update, and weights after it (after IgnoreTopK ran)."""

    def __init__(self) -> None:
        self.before: list[dict[str, torch.Tensor]] = []
        self.grads: list[dict[str, torch.Tensor]] = []
        self.after: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        self.before.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})
        self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.named_parameters()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.after.append({n: p.detach().clone() for n, p in pl_module.named_parameters()})


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 3, generator=g)), batch_size=16)


def fit(model: pl.LightningModule, callbacks: list[pl.Callback], steps: int) -> None:
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks,
    )
    trainer.fit(model, loader())


def test_rounding_of_the_reverted_count() -> None:
    assert n_reverted(400, 0.08) == 32
    assert n_reverted(50, 0.08) == 4  # 4.0
    assert n_reverted(96, 0.08) == 8  # 7.68 rounds up
    assert n_reverted(3, 0.08) == 0  # 0.24 rounds down
    assert n_reverted(25, 0.5) == 13  # 12.5: halves up
    assert n_reverted(7, 1.0) == 7 and n_reverted(7, 0.0) == 0


def test_revert_top_updates_against_a_sort() -> None:
    g = torch.Generator().manual_seed(1)
    before = torch.randn(30, 20, generator=g)
    after = before + torch.randn(30, 20, generator=g)
    param = after.clone()
    revert_top_updates(param, before, 48)
    moved = (after - before).abs().flatten()
    top = set(torch.argsort(moved, descending=True)[:48].tolist())  # the reference: a full sort
    reverted = set(torch.nonzero((param != after).flatten()).flatten().tolist())
    assert reverted == top
    flat = param.flatten()
    assert torch.equal(flat[sorted(top)], before.flatten()[sorted(top)])
    keep = sorted(set(range(600)) - top)
    assert torch.equal(flat[keep], after.flatten()[keep])  # bit-identical, not before + dW
    strided = after.clone().t()  # a non-contiguous parameter takes the masked path
    revert_top_updates(strided, before.t(), 48)
    assert torch.equal(strided.t(), param)


def test_every_step_reverts_exactly_k_of_each_tensor_and_keeps_the_rest() -> None:
    pl.seed_everything(0)
    model = MLP("sgd")
    recorder = StepRecorder()
    fit(model, [IgnoreTopK(0.08), recorder], steps=3)
    assert len(recorder.after) == 3
    expected = {"net.0.weight": 32, "net.0.bias": 4, "net.2.weight": 12, "net.2.bias": 0}
    for step in range(3):
        for name, n in expected.items():
            before, grad, after = recorder.before[step][name], recorder.grads[step][name], recorder.after[step][name]
            normal = before.add(grad, alpha=-LR)  # SGD's own update, computed independently
            reverted = (after == before) & (normal != before)
            kept = after == normal
            assert bool((reverted | kept).all()), name
            assert int(reverted.sum()) == n, (step, name)
            if n:
                moved = (normal - before).abs()
                assert moved[reverted].min() >= moved[kept].max()  # the largest updates were reverted


def test_first_step_matches_a_run_without_the_callback_outside_the_top_k() -> None:
    pl.seed_everything(0)
    plain = MLP("adamw")
    start = {n: p.detach().clone() for n, p in plain.named_parameters()}
    fit(plain, [], steps=1)
    pl.seed_everything(0)
    pruned = MLP("adamw")
    fit(pruned, [IgnoreTopK(0.25, modules=["net.0"])], steps=1)
    for name, p in pruned.named_parameters():
        normal = dict(plain.named_parameters())[name].detach()
        if name.startswith("net.0"):
            reverted = p.detach() == start[name]
            assert int(reverted.sum()) == n_reverted(p.numel(), 0.25), name
            assert torch.equal(p.detach()[~reverted], normal[~reverted])
        else:  # outside `modules`: the ordinary AdamW update, bit for bit
            assert torch.equal(p.detach(), normal), name


def test_selection_memory_and_errors() -> None:
    model = MLP()
    cb = IgnoreTopK(modules=["net.2"], param_filter=lambda name, p: name.endswith("weight"))
    cb.selected = cb.select(model)
    assert [(n, k) for n, _, k in cb.selected] == [("net.2.weight", 12)]
    assert cb.memory_bytes == 150 * 4
    with pytest.raises(ValueError, match=r"for 8% pass k=0\.08"):
        IgnoreTopK(8)
    with pytest.raises(ValueError, match=r"'net\.9' holds no trainable parameter"):
        IgnoreTopK(modules=["net.9"]).select(model)
    with pytest.raises(ValueError, match="no trainable parameter"):
        IgnoreTopK(param_filter=lambda name, p: False).select(model)


def test_manual_optimization_with_accumulation_prunes_once_per_step() -> None:
    from probes.demos import GPTConfig, TinyLM, corpus_loader

    pl.seed_everything(0)
    model = TinyLM(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=48), manual=True, accumulate=2)
    cb, recorder = IgnoreTopK(0.08), StepRecorder()
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb, recorder])
    trainer.fit(model, corpus_loader(n_windows=40, batch_size=4, block_size=40))
    assert cb.n_applied == 3 and len(recorder.before) == 3  # 6 micro-batches, 3 optimizer steps
    steps = [i for i in range(len(recorder.after)) if i % 2 == 1]  # batch ends right after each step
    name = "model.blocks.0.qkv.weight"  # dense: every entry gets a non-zero AdamW update
    n = n_reverted(32 * 96, 0.08)
    for step, after_idx in enumerate(steps):
        unchanged = recorder.after[after_idx][name] == recorder.before[step][name]
        assert int(unchanged.sum()) == n, step
