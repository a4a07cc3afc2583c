"""A small batched sampler for causal LMs that leaves training untouched.

:func:`sample_ids` draws ``n`` completions for each prompt with temperature and nucleus (top-p)
sampling, from a local :class:`torch.Generator` seeded by :attr:`SamplerConfig.seed`: the global
RNG is never consumed (and :func:`~probes.core.isolation.isolated_eval` restores it and every submodule's
mode anyway), so a run that samples has the same loss trajectory as one that does not.

Batching: prompts are grouped by token length, so every row of a batch has the same length and no
padding, position ids or attention masks are needed; each group is repeated ``n`` times and cut
into micro-batches of at most :attr:`SamplerConfig.batch_size` rows.

KV cache: when the model's ``forward`` accepts ``past_key_values`` and ``use_cache`` (the Hugging
Face convention), each new token costs one single-position forward. Otherwise every step runs the
whole sequence again (fine for the tiny reference model), sliding a window of the model's maximum
length when the sequence outgrows it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import torch
from torch import nn

from probes.core.isolation import isolated_eval
from probes.core.model_io import LogitsFn, extract_logits, infer_max_positions, make_logits_fn

__all__ = ["SamplerConfig", "nucleus_filter", "offers_kv_cache", "sample_ids", "sample_texts"]


@dataclass(frozen=True)
class SamplerConfig:
    """Options of the built-in sampler.

    Args:
        temperature: softmax temperature; 0 means greedy decoding.
        top_p: nucleus sampling: keep the smallest set of most likely tokens whose probability
            reaches ``top_p`` (1.0 keeps all).
        max_new_tokens: tokens generated per completion (fewer when ``eos_id`` ends all rows).
        seed: seed of the local generator; the same seed gives the same completions.
        eos_id: token id that ends a completion (not included in the output), or None.
        batch_size: maximum rows (prompts x samples) per forward pass.
        kv_cache: ``"auto"`` uses a KV cache when the model offers one, ``False`` never does,
            ``True`` requires one.

    Raises:
        ValueError: a value out of range (named in the message).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    seed: int = 0
    eos_id: Optional[int] = None
    batch_size: int = 256
    kv_cache: Union[bool, Literal["auto"]] = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or isinstance(self.temperature, bool) or self.temperature < 0:
            raise ValueError(f"Expected `temperature` >= 0 (0 is greedy), got {self.temperature!r}.")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(
                f"Expected `top_p` in (0, 1], got {self.top_p!r}. Use 1.0 to sample from the full distribution."
            )
        for name in ("max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Expected `{name}` to be a positive int, got {value!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"Expected `seed` to be an int, got {self.seed!r}.")
        if self.eos_id is not None and (not isinstance(self.eos_id, int) or self.eos_id < 0):
            raise ValueError(f"Expected `eos_id` to be a non-negative token id or None, got {self.eos_id!r}.")
        if self.kv_cache not in (True, False, "auto"):
            raise ValueError(f"Expected `kv_cache` to be True, False or 'auto', got {self.kv_cache!r}.")


def nucleus_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the top-p nucleus of each row and renormalise.

    The nucleus is the smallest set of most likely tokens whose total probability reaches
    ``top_p``; the most likely token is always kept. Ties are broken by token id order of
    :func:`torch.sort` (stable).

    Args:
        probs: ``[B, V]`` probabilities.
        top_p: in ``(0, 1]``; 1 returns ``probs`` unchanged.
    """
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of strictly more likely tokens
    sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return kept / kept.sum(dim=-1, keepdim=True)


def offers_kv_cache(module: nn.Module) -> bool:
    """Whether ``module.forward`` takes ``past_key_values`` and ``use_cache`` (Hugging Face style)."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return "past_key_values" in params and "use_cache" in params


def _past(output: Any) -> Any:
    past = getattr(output, "past_key_values", None)
    if past is None and isinstance(output, dict):
        past = output.get("past_key_values")
    if past is None:
        raise TypeError(
            f"The model was called with use_cache=True but its output ({type(output).__name__}) has no"
            " `past_key_values`; pass SamplerConfig(kv_cache=False)."
        )
    return past


def _pick(logits: torch.Tensor, config: SamplerConfig, generator: torch.Generator) -> torch.Tensor:
    logits = logits.float()
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / config.temperature, dim=-1)
    probs = nucleus_filter(probs, config.top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def sample_ids(
    module: nn.Module,
    prompts: Sequence[Sequence[int]],
    n: int,
    config: Optional[SamplerConfig] = None,
    *,
    logits_fn: Optional[LogitsFn] = None,
    max_positions: Optional[int] = None,
) -> list[list[list[int]]]:
    """Draw ``n`` completions (token ids, prompt excluded) for every prompt.

    Args:
        module: a causal LM mapping ``input_ids [B, T]`` to logits ``[B, T, V]`` (or an output that
            :func:`~probes.core.model_io.extract_logits` understands).
        prompts: token ids of each prompt (non-empty).
        n: completions per prompt.
        config: sampler options (defaults to :class:`SamplerConfig`).
        logits_fn: ``(module, input_ids, attention_mask) -> logits`` for models whose forward does
            not fit (disables the KV cache).
        max_positions: the model's maximum sequence length; inferred from its config when None.

    Returns:
        ``result[i][j]``: the ids of completion ``j`` of prompt ``i``, cut before ``eos_id``.

    Raises:
        ValueError: an empty prompt, ``n < 1``, or (with a KV cache) a prompt plus
            ``max_new_tokens`` longer than the model's maximum length.
    """
    cfg = config or SamplerConfig()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"Expected `n` (completions per prompt) to be a positive int, got {n!r}.")
    rows = [tuple(int(t) for t in p) for p in prompts]
    for i, p in enumerate(rows):
        if not p:
            raise ValueError(f"Prompt #{i} is empty: give at least one token (e.g. a BOS id) to condition on.")
    limit = max_positions or infer_max_positions(module)
    use_cache = (offers_kv_cache(module) and logits_fn is None) if cfg.kv_cache == "auto" else bool(cfg.kv_cache)
    if use_cache and not offers_kv_cache(module):
        raise ValueError(
            f"SamplerConfig(kv_cache=True) but {type(module).__name__}.forward takes no `past_key_values`"
            " and `use_cache`; pass kv_cache='auto' or False."
        )
    forward = make_logits_fn(module, logits_fn)
    device = _module_device(module)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    out: list[list[list[int]]] = [[] for _ in rows]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(rows):
        by_length.setdefault(len(p), []).append(i)
    with isolated_eval(module):
        for length in sorted(by_length):
            if use_cache and limit is not None and length + cfg.max_new_tokens > limit:
                raise ValueError(
                    f"A prompt of {length} tokens plus max_new_tokens={cfg.max_new_tokens} exceeds the model's"
                    f" {limit} positions; shorten the prompt or lower max_new_tokens."
                )
            jobs = [(i, j) for i in by_length[length] for j in range(n)]
            for start in range(0, len(jobs), cfg.batch_size):
                chunk = jobs[start : start + cfg.batch_size]
                ids = torch.tensor([rows[i] for i, _ in chunk], dtype=torch.long, device=device)
                new = _generate(module, forward, ids, cfg, generator, use_cache, limit)
                for (i, _), seq in zip(chunk, new.tolist()):  # one bulk transfer per batch
                    if cfg.eos_id is not None and cfg.eos_id in seq:
                        seq = seq[: seq.index(cfg.eos_id)]
                    out[i].append(seq)
    return out


def _generate(
    module: nn.Module,
    forward: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
    ids: torch.Tensor,
    cfg: SamplerConfig,
    generator: torch.Generator,
    use_cache: bool,
    limit: Optional[int],
) -> torch.Tensor:
    """New tokens ``[B, <= max_new_tokens]`` after equal-length prompts ``ids [B, T]``."""
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new: list[torch.Tensor] = []
    past: Any = None
    seq = ids
    for _ in range(cfg.max_new_tokens):
        if use_cache:
            output = module(seq if past is None else new[-1][:, None], past_key_values=past, use_cache=True)
            past = _past(output)
            logits = extract_logits(output)[:, -1]
        else:
            window = seq if limit is None else seq[:, -limit:]
            logits = forward(window, None)[:, -1]
        token = _pick(logits, cfg, generator)
        if cfg.eos_id is not None:
            token = token.masked_fill(done, cfg.eos_id)
            done = done | (token == cfg.eos_id)
        new.append(token)
        seq = torch.cat([seq, token[:, None]], dim=1)
        if cfg.eos_id is not None and bool(done.all()):
            break
    return torch.stack(new, dim=1)


def sample_texts(
    module: nn.Module,
    prompts: Sequence[str],
    n: int,
    *,
    encode: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
    config: Optional[SamplerConfig] = None,
    logits_fn: Optional[LogitsFn] = None,
    bos_id: Optional[int] = None,
) -> list[list[str]]:
    """:func:`sample_ids` on text prompts, decoding each completion with ``decode``.

    Args:
        module: the causal LM.
        prompts: the prompt texts.
        n: completions per prompt.
        encode: text -> token ids.
        decode: token ids -> text.
        config: sampler options.
        logits_fn: see :func:`sample_ids`.
        bos_id: token id prepended to every prompt, or None.
    """
    prefix = [bos_id] if bos_id is not None else []
    ids = sample_ids(module, [prefix + list(encode(p)) for p in prompts], n, config, logits_fn=logits_fn)
    return [[decode(c) for c in per_prompt] for per_prompt in ids]
