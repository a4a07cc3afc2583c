"""The LM head only where it is read: project the hidden states of the scored positions alone.

A scoring pass needs logits at a few positions of each row (the last context token and the
continuation's tokens), yet a model's forward projects every position onto the vocabulary: with a
large vocabulary that projection dominates the cost and memory of the pass (``[B, T, V]`` floats).
:class:`ReadPositions` installs a forward pre-hook on the model's output head that keeps only the
hidden states of the positions read, so the head computes ``[1, N, V]`` for the ``N`` scored
positions; anything the model does after the head that works element by element (a soft cap, a
scale) still applies. The model's body runs unchanged.

The head is found automatically (``get_output_embeddings()`` of Hugging Face models, else a
``lm_head`` or ``head`` linear layer whose outputs are the vocabulary) or named by the user
(``ScoringOptions(head="decoder.out")``). Whether a model's forward really returns the head's
output as its logits is verified once, on one row, against the full forward
(:meth:`ReadPositions.verify`); a model where they differ falls back to full logits with a warning.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
from torch import nn

__all__ = ["ReadPositions", "find_head"]

# the verdict of ReadPositions.verify per head module (weakly held: gone with the model)
_VERDICTS: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def find_head(model: nn.Module, head: Optional[str], vocab_size: Optional[int]) -> Optional[nn.Module]:
    """The output head of ``model``: the module at attribute path ``head``, or with ``"auto"`` the
    HF output embeddings or a ``lm_head`` / ``head`` linear layer with ``vocab_size`` outputs;
    None when ``head`` is None or nothing fits.

    Raises:
        ValueError: ``head`` names a path that does not exist or is not a module.
    """
    if head is None:
        return None
    if head != "auto":
        obj: Any = model
        for part in head.split("."):
            if not hasattr(obj, part):
                raise ValueError(
                    f"{type(model).__name__} has no attribute path {head!r} (missing {part!r}); pass `head=` the"
                    " output layer inside the probed model, 'auto', or None for full logits."
                )
            obj = getattr(obj, part)
        if not isinstance(obj, nn.Module):
            raise ValueError(f"`head={head!r}` resolves to {type(obj).__name__}, not a torch.nn.Module.")
        return obj
    get_out = getattr(model, "get_output_embeddings", None)
    candidates = [get_out()] if callable(get_out) else []
    candidates += [getattr(model, name, None) for name in ("lm_head", "head")]
    for found in candidates:
        if isinstance(found, nn.Linear) and (vocab_size is None or found.out_features == vocab_size):
            return found
    return None


class ReadPositions:
    """Restricts a model's output head to the positions a scoring batch reads.

    Args:
        head: the output head module (see :func:`find_head`).
    """

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    @property
    def verified(self) -> Optional[bool]:
        """Whether the restricted head matched the full forward (None: not checked yet). One verdict
        per head module, shared by every reader of the model."""
        return _VERDICTS.get(self.head)

    @contextmanager
    def selecting(self, rows: torch.Tensor, positions: torch.Tensor) -> Iterator[None]:
        """Within the block the head sees only ``hidden[rows, positions]`` (as a ``[1, N, H]`` batch)."""

        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            hidden = args[0]
            return (hidden[rows, positions].unsqueeze(0), *args[1:])

        handle = self.head.register_forward_pre_hook(pre_hook)
        try:
            yield
        finally:
            handle.remove()

    def logits(
        self,
        forward: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
        ids: torch.Tensor,
        mask: Optional[torch.Tensor],
        rows: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """``[N, V]`` logits at ``(rows[i], positions[i])`` from one forward of ``ids``."""
        with self.selecting(rows, positions):
            out = forward(ids, mask)
        if out.dim() != 3 or out.shape[0] != 1 or out.shape[1] != rows.numel():
            raise ValueError(f"the head's output has shape {list(out.shape)}, expected [1, {rows.numel()}, V]")
        return out[0]

    def verify(
        self, forward: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor], ids: torch.Tensor
    ) -> bool:
        """Compare the selected logits with the full forward's on one batch (no grad); remember and
        return whether they agree (to float32 rounding). A model whose forward reshapes, mixes
        positions after the head, or does not call it on ``[B, T, H]`` fails here."""
        b, t = ids.shape
        # a subset of the positions, in reverse order: a model that mixes or reorders positions
        # after its head gives different numbers for it
        keep = torch.arange(t - 1, -1, -2, device=ids.device)
        rows = torch.arange(b, device=ids.device).repeat_interleave(len(keep))
        positions = keep.repeat(b)
        try:
            full = forward(ids, None)
            picked = self.logits(forward, ids, None, rows, positions)
            ok = full.dim() == 3 and torch.allclose(
                picked.float(), full[rows, positions].float(), rtol=1e-4, atol=1e-4, equal_nan=True
            )
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            warnings.warn(f"Scoring with full logits: restricting the output head failed ({err}).", stacklevel=3)
            ok = False
        else:
            if not ok:
                warnings.warn(
                    f"Scoring with full logits: the model's output differs when its head "
                    f"({type(self.head).__name__}) sees only the read positions; pass head=None to silence this.",
                    stacklevel=3,
                )
        _VERDICTS[self.head] = bool(ok)
        return bool(ok)
