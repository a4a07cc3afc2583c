"""Adapters: turn a user's tokenizer into ``str -> list[int]`` and a user's model into
``(input_ids, attention_mask) -> logits``. No Lightning import here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from torch import nn

__all__ = [
    "Encoder",
    "LogitsFn",
    "as_encoder",
    "extract_logits",
    "infer_max_positions",
    "infer_vocab_size",
    "make_logits_fn",
    "resolve_module",
]

Encoder = Callable[[str], list[int]]
LogitsFn = Callable[[nn.Module, torch.Tensor, Optional[torch.Tensor]], Any]


def as_encoder(tokenizer: Any) -> Optional[Encoder]:
    """Wrap a tokenizer as a function from text to token ids, without special tokens.

    Accepts a Hugging Face tokenizer (``transformers``), a ``tokenizers.Tokenizer``, any callable
    returning a sequence of ints, or ``None`` (only pre-tokenized pairs are then allowed).
    """
    if tokenizer is None:
        return None
    module = type(tokenizer).__module__
    if module.startswith("tokenizers"):
        return lambda text: list(tokenizer.encode(text, add_special_tokens=False).ids)
    if hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "encode"):
        return lambda text: list(tokenizer.encode(text, add_special_tokens=False))
    if hasattr(tokenizer, "encode") and not callable(tokenizer):
        return lambda text: list(tokenizer.encode(text))
    if callable(tokenizer):

        def encode(text: str) -> list[int]:
            out = tokenizer(text)
            if isinstance(out, torch.Tensor):
                out = out.tolist()
            ids = list(out)
            if not all(isinstance(i, int) for i in ids):
                raise ValueError(
                    f"Tokenizer returned {type(out).__name__} for {text!r}; expected a sequence of int token ids."
                )
            return ids

        return encode
    raise ValueError(
        f"Unsupported tokenizer {tokenizer!r}: pass a Hugging Face tokenizer, a tokenizers.Tokenizer,"
        " a callable str -> list[int], or None with pre-tokenized pairs."
    )


def extract_logits(output: Any) -> torch.Tensor:
    """Logits from a model output: a tensor, an object with ``.logits``, a dict, or a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"Could not find logits in a model output of type {type(output).__name__}: return a tensor,"
        " an object with `.logits`, or a tuple whose first item is the logits; or pass `logits_fn`."
    )


def _accepts_attention_mask(module: nn.Module) -> bool:
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return "attention_mask" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def make_logits_fn(
    module: nn.Module, logits_fn: Optional[LogitsFn] = None
) -> Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]:
    """A closure ``(input_ids, attention_mask) -> logits [B, T, V]`` for ``module``."""
    if logits_fn is not None:
        return lambda ids, mask: extract_logits(logits_fn(module, ids, mask))
    if _accepts_attention_mask(module):
        return lambda ids, mask: extract_logits(module(ids, attention_mask=mask))
    return lambda ids, mask: extract_logits(module(ids))


def resolve_module(root: nn.Module, path: Optional[str]) -> nn.Module:
    """``root`` itself, or the submodule at dotted attribute ``path`` (e.g. ``"model"``)."""
    if not path:
        return root
    obj: Any = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise ValueError(
                f"{type(root).__name__} has no attribute path {path!r} (missing {part!r});"
                " pass `model=` the attribute holding the language model, or None for the module itself."
            )
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        raise ValueError(f"`model={path!r}` resolves to {type(obj).__name__}, not a torch.nn.Module.")
    return obj


def _config_int(module: nn.Module, names: Sequence[str]) -> Optional[int]:
    for holder in (getattr(module, "config", None), module):
        if holder is None:
            continue
        for name in names:
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def infer_vocab_size(module: nn.Module) -> Optional[int]:
    """Vocabulary size from a config or the output embedding, or None when unknown."""
    found = _config_int(module, ("vocab_size",))
    if found is not None:
        return found
    get_out = getattr(module, "get_output_embeddings", None)
    if callable(get_out):
        out = get_out()
        if isinstance(out, nn.Linear):
            return out.out_features
    return None


def infer_max_positions(module: nn.Module) -> Optional[int]:
    """Maximum sequence length from a config (``n_positions``, ``block_size``...), or None."""
    return _config_int(module, ("max_position_embeddings", "n_positions", "block_size", "n_ctx"))
