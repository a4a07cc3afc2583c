"""IgnoreTopK: the "ignore-k" update pruning of Sun et al. 2025 (arXiv 2504.09522).

After every optimizer step, in every selected parameter tensor, the ``k`` fraction of entries
whose update ``dW = W_after - W_before`` is largest in magnitude is reverted:
``W = W_before + dW * mask`` with ``mask = 0`` on those entries and 1 elsewhere, without
rescaling. The paper reports that this dilutes priming (the spread of a new fact's keyword to
unrelated contexts) while keeping memorization of the fact itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from typing_extensions import override

__all__ = ["IgnoreTopK", "n_reverted"]

_STATE_VERSION = 1

ParamFilter = Callable[[str, nn.Parameter], bool]


def n_reverted(numel: int, k: float) -> int:
    """Entries of a ``numel``-entry tensor reverted at fraction ``k``: ``k * numel`` rounded to the
    nearest integer, halves up (8% of 100 entries is 8, of 96 entries 7.68 -> 8, of 6 entries
    0.48 -> 0)."""
    return min(numel, math.floor(k * numel + 0.5))


def revert_top_updates(param: torch.Tensor, before: torch.Tensor, n: int) -> None:
    """In place: give the ``n`` entries of ``param`` that moved most since ``before`` their old value.

    The other entries are not touched (bit-identical to the optimizer's result). Ties in
    ``|dW|`` are broken by ``torch.topk``; exactly ``n`` entries are reverted.
    """
    if n <= 0:
        return
    with torch.no_grad():
        before = before.to(param.device, non_blocking=True)
        moved = (param.detach() - before).abs_().reshape(-1)
        idx = torch.topk(moved, n, sorted=False).indices
        target = param.detach()
        if target.is_contiguous():
            target.view(-1).index_copy_(0, idx, before.reshape(-1)[idx])
        else:
            mask = torch.zeros(moved.numel(), dtype=torch.bool, device=param.device)
            mask[idx] = True
            target.copy_(torch.where(mask.view_as(target), before, target))


class IgnoreTopK(Callback):
    """Reverts the largest ``k`` fraction of each selected tensor's update after every optimizer step.

    **How.** ``on_before_optimizer_step`` (after backward, before the update) copies the selected
    parameters; a step post-hook registered on the optimizer then reverts the top ``k`` entries of
    ``|dW|`` per tensor as soon as ``optimizer.step()`` returns, so every later hook (and the next
    probe reading) sees the pruned weights. If an optimizer wrapper never calls the torch
    optimizer's ``step``, ``on_train_batch_end`` applies the pending reversion instead. Only the
    weights are reverted: optimizer state (Adam moments) keeps the full gradient, as in the paper.
    Works with gradient accumulation, manual optimization and several optimizers (each step only
    touches that optimizer's parameters).

    **Memory.** The callback keeps one persistent copy of every selected parameter, in its own
    dtype: as much memory as those parameters (for a 1B-parameter bf16 model, 2 GB). During the
    reversion it also allocates, one tensor at a time, ``|dW|`` (the size of that tensor) and the
    int64 indices of the reverted entries (``8 * k`` bytes per entry: 0.64 bytes at k = 8%). Limit
    it with ``modules=`` (e.g. only the MLPs) or ``param_filter=``, or keep the copy in host memory
    with ``snapshot_device="cpu"`` (two device-host transfers of the selected parameters per step).
    :attr:`memory_bytes` reports the copy's size after setup.

    Args:
        k: fraction of entries reverted in every tensor, in [0, 1] (default 0.08, the paper's 8%).
        modules: dotted names of submodules (relative to the LightningModule, e.g.
            ``["model.blocks.0.mlp"]``) whose parameters are pruned; None selects all.
        param_filter: ``(name, parameter) -> bool`` to select parameters further.
        snapshot_device: where the copy lives (default: with each parameter).

    Raises:
        ValueError: ``k`` outside [0, 1] (``k`` is a fraction: pass 0.08 for 8%), a module name
            that matches no parameter, or a selection with no parameters.

    Example::

        trainer = Trainer(callbacks=[IgnoreTopK(0.08, modules=["model.blocks"]), PrimingProbe(...)])
    """

    def __init__(
        self,
        k: float = 0.08,
        *,
        modules: Optional[Sequence[str]] = None,
        param_filter: Optional[ParamFilter] = None,
        snapshot_device: Union[str, torch.device, None] = None,
    ) -> None:
        if not isinstance(k, (int, float)) or isinstance(k, bool) or not 0.0 <= k <= 1.0:
            hint = f" (k is a fraction: for {k}% pass k={k / 100:g})" if isinstance(k, (int, float)) and k > 1 else ""
            raise ValueError(f"Expected `k` in [0, 1], got {k!r}{hint}.")
        if modules is not None and (isinstance(modules, str) or not all(isinstance(m, str) for m in modules)):
            raise ValueError(f"Expected `modules` to be a list of dotted module names, got {modules!r}.")
        if param_filter is not None and not callable(param_filter):
            raise ValueError(f"Expected `param_filter` to be a callable (name, param) -> bool, got {param_filter!r}.")
        self.k = float(k)
        self.modules = None if modules is None else tuple(modules)
        self.param_filter = param_filter
        self.snapshot_device = None if snapshot_device is None else torch.device(snapshot_device)
        self.selected: list[tuple[str, nn.Parameter, int]] = []  # (name, parameter, entries reverted)
        self._buffers: dict[str, torch.Tensor] = {}
        self._hooks: dict[int, Any] = {}
        self._by_optimizer: dict[int, list[tuple[str, nn.Parameter, int]]] = {}
        self._pending: dict[int, list[tuple[str, nn.Parameter, int]]] = {}
        self.n_applied = 0

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[k={self.k:g},modules={self.modules}]"

    def select(self, root: nn.Module) -> list[tuple[str, nn.Parameter, int]]:
        """The trainable parameters of ``root`` this callback prunes, with the entries reverted in each."""
        named = [(n, p) for n, p in root.named_parameters() if p.requires_grad]
        if self.modules is not None:
            for m in self.modules:
                if not any(n == m or n.startswith(m + ".") for n, _ in named):
                    tops = sorted({n.split(".")[0] for n, _ in named})
                    raise ValueError(
                        f"IgnoreTopK: module {m!r} holds no trainable parameter; use dotted names relative to"
                        f" the LightningModule (top-level: {tops})."
                    )
            named = [(n, p) for n, p in named if any(n == m or n.startswith(m + ".") for m in self.modules)]
        if self.param_filter is not None:
            named = [(n, p) for n, p in named if self.param_filter(n, p)]
        if not named:
            raise ValueError("IgnoreTopK: the selection (modules= / param_filter=) contains no trainable parameter.")
        return [(n, p, n_reverted(p.numel(), self.k)) for n, p in named]

    @property
    def memory_bytes(self) -> int:
        """Bytes of the parameter copy (selected parameters x element size)."""
        return sum(p.numel() * p.element_size() for _, p, _ in self.selected)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.selected = self.select(pl_module)

    def _entries(self, optimizer: torch.optim.Optimizer) -> list[tuple[str, nn.Parameter, int]]:
        key = id(optimizer)
        if key not in self._by_optimizer:
            owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
            self._by_optimizer[key] = [e for e in self.selected if id(e[1]) in owned]
            self._hooks[key] = optimizer.register_step_post_hook(lambda opt, args, kwargs: self._apply(id(opt)))
        return self._by_optimizer[key]

    def _snapshot(self, entries: list[tuple[str, nn.Parameter, int]]) -> None:
        with torch.no_grad():
            for name, p, _ in entries:
                device = self.snapshot_device or p.device
                buf = self._buffers.get(name)
                if buf is None or buf.device != device or buf.shape != p.shape or buf.dtype != p.dtype:
                    buf = self._buffers[name] = torch.empty(p.shape, dtype=p.dtype, device=device)
                buf.copy_(p.detach(), non_blocking=True)

    def _apply(self, key: int) -> None:
        entries = self._pending.pop(key, None)
        if not entries:
            return
        for name, p, n in entries:
            revert_top_updates(p, self._buffers[name], n)
        self.n_applied += 1

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        raw = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the torch one
        entries = self._entries(raw)
        if entries:
            self._snapshot(entries)
            self._pending[id(raw)] = entries

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for key in list(self._pending):  # the step hook did not fire (a wrapper bypassed optimizer.step)
            self._apply(key)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()
        self._by_optimizer.clear()
        self._pending.clear()
        self._buffers.clear()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "k": self.k, "n_applied": self.n_applied}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = int(state_dict.get("version", 0))
        if version > _STATE_VERSION:
            rank_zero_warn(f"{self.state_key}: checkpoint state version {version} is newer than {_STATE_VERSION}.")
        self.n_applied = int(state_dict.get("n_applied", 0))
