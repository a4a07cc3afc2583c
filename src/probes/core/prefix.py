"""Shared contexts computed once, through a key/value cache (Hugging Face-style models).

When several items share a context and their continuations are longer than one token (eight
multi-token keywords after one context, say), the packed plan of :mod:`probes.core.plan` forwards
the context once per continuation: its rows are ``context + continuation[:-1]``. A model that takes
and returns a key/value cache can do better: :class:`PrefixPlan` forwards each distinct context
once (contexts of equal length batched together, so no padding enters the cache), reads the first
continuation token from the context's last position, then forwards every continuation's remaining
tokens against its context's cache (the cache rows repeated per continuation, the tails padded on
the right), and projects the output head only at the positions read. Each distinct token is then
forwarded once per context, which is the engine's floor for such sets.

It needs a model with ``get_output_embeddings()`` and a ``base_model`` whose forward takes
``use_cache`` and ``past_key_values`` (``cache`` in newer transformers) and returns
``last_hidden_state`` and the cache, with ``reorder_cache`` (transformers' ``Cache``).
:meth:`PrefixPlan.verify` compares it, once, with the packed plan on the same items; a model where
they differ (or anything raises) keeps the packed plan.
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from probes.core.plan import ItemScores, TokenizedItem
from probes.core.scoring import checked_target_logprobs, target_ranks

__all__ = ["PrefixPlan", "cache_parts", "worth_caching"]

# the verdict of PrefixPlan.verify per model (weakly held)
_VERDICTS: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _cache_kwarg(body: nn.Module) -> Optional[str]:
    """The name under which ``body.forward`` takes a cache: ``cache`` (newer transformers) or
    ``past_key_values`` (older), or None."""
    try:
        params = inspect.signature(body.forward).parameters
    except (TypeError, ValueError):
        return None
    if "use_cache" not in params:
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _returned_cache(out: object) -> object:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def cache_parts(model: nn.Module) -> Optional[tuple[nn.Module, nn.Module]]:
    """``(body, head)`` of a model that can score through a key/value cache, else None."""
    get_out = getattr(model, "get_output_embeddings", None)
    body = getattr(model, "base_model", None)
    if not callable(get_out) or not isinstance(body, nn.Module) or body is model:
        return None
    head = get_out()
    if not isinstance(head, nn.Module):
        return None
    if _cache_kwarg(body) is None:
        return None
    return body, head


@dataclass
class _Chunk:
    contexts: torch.Tensor  # [k, L] context ids (equal length)
    first_ctx: torch.Tensor  # [n_items] chunk row of each item's context
    first_tok: torch.Tensor  # [n_items] first continuation token
    items: torch.Tensor  # [n_items] item index
    tail_ctx: Optional[torch.Tensor]  # [n_tails] chunk row of each tail's context
    tail_ids: Optional[torch.Tensor]  # [n_tails, W] continuation[:-1] of each multi-token item, padded right
    read_row: Optional[torch.Tensor]  # [N] tail row of each read position
    read_col: Optional[torch.Tensor]  # [N] column in the tail of each read position
    read_tok: Optional[torch.Tensor]  # [N] token read there
    read_item: Optional[torch.Tensor]  # [N] its item


class PrefixPlan:
    """Items grouped by context, in chunks of equal-length contexts under a token budget.

    Args:
        items: what to score (already validated by a :class:`~probes.core.plan.ScoringPlan`).
        token_budget: bound on the tokens of one chunk (contexts, plus the context length once per
            continuation, which the repeated cache holds).
    """

    def __init__(self, items: Sequence[TokenizedItem], token_budget: int) -> None:
        self.items = list(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, it in enumerate(self.items):
            groups.setdefault(it.context, []).append(i)
        by_length: dict[int, list[tuple[int, ...]]] = {}
        for context in groups:
            by_length.setdefault(len(context), []).append(context)
        self.chunks: list[_Chunk] = []
        for length in sorted(by_length):
            current: list[tuple[int, ...]] = []
            cost = 0
            for context in by_length[length]:
                members = groups[context]
                need = length + sum(length + len(self.items[i].target) for i in members)
                if current and cost + need > token_budget:
                    self.chunks.append(self._chunk(current, groups))
                    current, cost = [], 0
                current.append(context)
                cost += need
            if current:
                self.chunks.append(self._chunk(current, groups))
        self.n_tokens = torch.tensor([len(it.target) for it in self.items], dtype=torch.long)
        self.n_contexts = len(groups)

    def _chunk(self, contexts: list[tuple[int, ...]], groups: dict[tuple[int, ...], list[int]]) -> _Chunk:
        first_ctx, first_tok, items = [], [], []
        tail_ctx: list[int] = []
        tails: list[tuple[int, ...]] = []
        read_row, read_col, read_tok, read_item = [], [], [], []
        for row, context in enumerate(contexts):
            for i in groups[context]:
                target = self.items[i].target
                first_ctx.append(row)
                first_tok.append(target[0])
                items.append(i)
                if len(target) > 1:
                    # the tail's input is target[:-1]; position j of it predicts target[j + 1]
                    for j, tok in enumerate(target[1:]):
                        read_row.append(len(tails))
                        read_col.append(j)
                        read_tok.append(tok)
                        read_item.append(i)
                    tail_ctx.append(row)
                    tails.append(target[:-1])
        long = torch.long
        tail_ids = None
        if tails:
            width = max(map(len, tails))
            tail_ids = torch.zeros(len(tails), width, dtype=long)
            for r, t in enumerate(tails):
                tail_ids[r, : len(t)] = torch.tensor(t, dtype=long)
        return _Chunk(
            contexts=torch.tensor(contexts, dtype=long),
            first_ctx=torch.tensor(first_ctx, dtype=long),
            first_tok=torch.tensor(first_tok, dtype=long),
            items=torch.tensor(items, dtype=long),
            tail_ctx=torch.tensor(tail_ctx, dtype=long) if tails else None,
            tail_ids=tail_ids,
            read_row=torch.tensor(read_row, dtype=long) if tails else None,
            read_col=torch.tensor(read_col, dtype=long) if tails else None,
            read_tok=torch.tensor(read_tok, dtype=long) if tails else None,
            read_item=torch.tensor(read_item, dtype=long) if tails else None,
        )

    def run(self, body: nn.Module, head: nn.Module, device: torch.device) -> ItemScores:
        """Score every item (call inside :func:`~probes.core.isolation.isolated_eval`)."""
        n = len(self.items)
        logp_first = torch.empty(n, dtype=torch.float64, device=device)
        logp_seq = torch.zeros(n, dtype=torch.float64, device=device)
        rank = torch.empty(n, dtype=torch.long, device=device)
        bad = torch.zeros(n, dtype=torch.long, device=device)
        for c in self.chunks:
            out = body(input_ids=c.contexts.to(device), use_cache=True)
            last = head(out.last_hidden_state[:, -1])  # [k, V]: one projection per context
            picked = last[c.first_ctx.to(device)]  # [n_items, V]
            items, toks = c.items.to(device), c.first_tok.to(device)
            lp, broken = checked_target_logprobs(picked, toks)
            logp_first[items] = lp.double()
            logp_seq.index_add_(0, items, lp.double())
            bad.index_add_(0, items, broken.long())
            rank[items] = target_ranks(picked, toks)
            if c.tail_ids is not None:
                assert c.tail_ctx is not None
                cache: Any = _returned_cache(out)
                cache.reorder_cache(c.tail_ctx.to(device))  # one cache row per tail
                kwargs = {_cache_kwarg(body) or "past_key_values": cache, "use_cache": False}
                hidden = body(input_ids=c.tail_ids.to(device), **kwargs).last_hidden_state
                assert c.read_row is not None and c.read_col is not None and c.read_tok is not None
                logits = head(hidden[c.read_row.to(device), c.read_col.to(device)])  # read positions only
                lp_t, broken_t = checked_target_logprobs(logits, c.read_tok.to(device))
                read_item = c.read_item.to(device)  # type: ignore[union-attr]
                logp_seq.index_add_(0, read_item, lp_t.double())
                bad.index_add_(0, read_item, broken_t.long())
        broken_item = bad > 0
        nan = torch.full_like(logp_seq, float("nan"))
        return ItemScores(
            torch.where(broken_item, nan, logp_first),
            torch.where(broken_item, nan, logp_seq),
            torch.where(broken_item, torch.zeros_like(rank), rank),
            self.n_tokens.to(device),
        )

    @staticmethod
    def verdict(model: nn.Module) -> Optional[bool]:
        """Whether this path matched the packed plan on ``model`` (None: not checked yet)."""
        return _VERDICTS.get(model)

    def verify(self, model: nn.Module, packed: Callable[[], ItemScores], device: torch.device) -> bool:
        """Compare :meth:`run` with the packed plan's scores (``packed()``) once; remember the verdict
        for ``model``. Call inside :func:`~probes.core.isolation.isolated_eval`."""
        parts = cache_parts(model)
        ok = False
        if parts is not None:
            try:
                mine, ref = self.run(*parts, device), packed()
                ok = bool(
                    torch.allclose(mine.logp_seq, ref.logp_seq, rtol=1e-4, atol=1e-4, equal_nan=True)
                    and torch.allclose(mine.logp_first, ref.logp_first, rtol=1e-4, atol=1e-4, equal_nan=True)
                )
            except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, AssertionError) as err:
                warnings.warn(f"Scoring without a key/value cache: the cached path failed ({err}).", stacklevel=3)
            else:
                if not ok:
                    warnings.warn(
                        f"Scoring without a key/value cache: {type(model).__name__}'s cached forward differs from"
                        " its plain forward on the probe's items.",
                        stacklevel=3,
                    )
        _VERDICTS[model] = ok
        return ok


def worth_caching(items: Sequence[TokenizedItem]) -> bool:
    """Whether some context is shared by items with continuations longer than one token (only then
    does the packed plan forward a context more than once)."""
    seen: dict[tuple[int, ...], int] = {}
    for it in items:
        if len(it.target) > 1:
            seen[it.context] = seen.get(it.context, 0) + 1
            if seen[it.context] > 1:
                return True
    return False

