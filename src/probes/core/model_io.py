"""Adapters: turn a user's tokenizer into ``str -> list[int]`` and a user's model into
``(input_ids, attention_mask) -> logits``. No Lightning import here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from torch import nn

from probes.core.tokenize import checked_ids

__all__ = [
    "Encoder",
    "LogitsFn",
    "TextEncoder",
    "as_encoder",
    "extract_logits",
    "infer_max_positions",
    "infer_vocab_size",
    "make_logits_fn",
    "resolve_module",
    "unwrap_compiled",
]

Encoder = Callable[[str], list[int]]
LogitsFn = Callable[[nn.Module, torch.Tensor, Optional[torch.Tensor]], Any]


class TextEncoder:
    """``str -> list[int]`` without special tokens, plus :meth:`pieces` to show ids as text.

    Every call checks that the tokenizer returned a list of ints (a :class:`ValueError` names what
    it returned otherwise).
    """

    def __init__(self, encode: Callable[[str], Any], pieces: Optional[Callable[[Sequence[int]], list[str]]] = None):
        self._encode = encode
        self._pieces = pieces

    def __call__(self, text: str) -> list[int]:
        return checked_ids(self._encode(text), text)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The token strings of ``ids`` (the ids themselves as strings when the tokenizer cannot say)."""
        if self._pieces is None:
            return [str(i) for i in ids]
        return [str(p) for p in self._pieces([int(i) for i in ids])]


def _pieces_of(tokenizer: Any) -> Optional[Callable[[Sequence[int]], list[str]]]:
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # transformers
        return lambda ids: list(tokenizer.convert_ids_to_tokens(list(ids)))
    if hasattr(tokenizer, "id_to_token"):  # tokenizers.Tokenizer
        return lambda ids: [tokenizer.id_to_token(i) for i in ids]
    if hasattr(tokenizer, "decode"):
        return lambda ids: [tokenizer.decode([i]) for i in ids]
    return None


def as_encoder(tokenizer: Any) -> Optional[TextEncoder]:
    """Wrap a tokenizer as a function from text to token ids, without special tokens.

    Accepts a Hugging Face tokenizer (``transformers``), a ``tokenizers.Tokenizer``, any callable
    returning a sequence of ints, or ``None`` (only pre-tokenized pairs are then allowed). A
    callable that adds special tokens itself (a BOS, an EOS) is handled by the score convention
    (:mod:`probes.core.tokenize`).

    Raises:
        ValueError: an unsupported tokenizer; at call time, a tokenizer that returns anything but a
            list of ints.
    """
    if tokenizer is None:
        return None
    if isinstance(tokenizer, TextEncoder):
        return tokenizer
    pieces = _pieces_of(tokenizer)
    module = type(tokenizer).__module__
    if module.startswith("tokenizers"):
        return TextEncoder(lambda text: list(tokenizer.encode(text, add_special_tokens=False).ids), pieces)
    if hasattr(tokenizer, "convert_tokens_to_ids") and hasattr(tokenizer, "encode"):
        return TextEncoder(lambda text: tokenizer.encode(text, add_special_tokens=False), pieces)
    if hasattr(tokenizer, "encode") and not callable(tokenizer):
        return TextEncoder(tokenizer.encode, pieces)
    if callable(tokenizer):
        return TextEncoder(tokenizer, pieces)
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
        return unwrap_compiled(root)
    obj: Any = unwrap_compiled(root)
    for part in path.split("."):
        if not hasattr(obj, part):
            raise ValueError(
                f"{type(root).__name__} has no attribute path {path!r} (missing {part!r});"
                " pass `model=` the attribute holding the language model, or None for the module itself."
            )
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        raise ValueError(f"`model={path!r}` resolves to {type(obj).__name__}, not a torch.nn.Module.")
    return unwrap_compiled(obj)


def unwrap_compiled(module: nn.Module) -> nn.Module:
    """The original module of a ``torch.compile``-d one (probing it directly avoids recompiles:
    the probe's no-grad, eval-mode, differently shaped forwards would each be a new graph)."""
    while isinstance(getattr(module, "_orig_mod", None), nn.Module) and type(module).__name__ == "OptimizedModule":
        module = module._orig_mod  # type: ignore[assignment]
    return module


def _config_int(module: nn.Module, names: Sequence[str]) -> Optional[int]:
    """The first positive int among ``names`` on a module's ``config`` or on the module itself,
    searching ``module`` first, then its submodules in order (a LightningModule holding an HF
    model or a nanoGPT model finds the inner one's value)."""
    for sub in module.modules():
        for holder in (getattr(sub, "config", None), sub):
            if holder is None:
                continue
            for name in names:
                value = getattr(holder, name, None)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None


def infer_vocab_size(module: nn.Module) -> Optional[int]:
    """Vocabulary size from a config or the output embedding (of ``module`` or the first
    submodule that has one), or None when unknown."""
    found = _config_int(module, ("vocab_size",))
    if found is not None:
        return found
    for sub in module.modules():
        get_out = getattr(sub, "get_output_embeddings", None)
        if callable(get_out):
            out = get_out()
            if isinstance(out, nn.Linear):
                return out.out_features
    return None


def infer_max_positions(module: nn.Module) -> Optional[int]:
    """Maximum sequence length from a config (``max_position_embeddings``, ``n_positions``,
    ``block_size``, ``n_ctx``) of ``module`` or the first submodule that has one, or None."""
    return _config_int(module, ("max_position_embeddings", "n_positions", "block_size", "n_ctx"))
