"""The batched scoring pass: P(continuation | context) for many items in one no-grad sweep.

Layers:

* :func:`probes.keyword.spec.tokenize_pairs` turns text pairs into ``(context_ids, keyword_ids)`` under the one score
  convention of :mod:`probes.core.tokenize`: the context as written, the separator and keyword as
  the continuation, split from their joint tokenization.
* :class:`ScoringPlan` is built once from tokenized items: rows are deduplicated (a row that is a
  prefix of another is served by the longer one, so every keyword sharing a context costs one
  forward row when keywords are single tokens), length-sorted and packed into padded micro-batches
  bounded by a token budget. Index tensors are cached per device.
* :meth:`ScoringPlan.run` does the forward passes and returns device tensors: no ``.item()``.
* :func:`probes.core.isolation.isolated_eval` guarantees the pass leaves training untouched (mode, grads, RNG).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Optional

import torch

from probes.core.head import ReadPositions
from probes.core.scoring import checked_target_logprobs, target_ranks

__all__ = [
    "ItemScores",
    "ScoringPlan",
    "TokenizedItem",
    "split_at_boundary",
]

Forward = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class TokenizedItem:
    """One scored item: the ids of the context and of the continuation that follows it."""

    name: str
    context: tuple[int, ...]
    target: tuple[int, ...]


def split_at_boundary(context_ids: Sequence[int], full_ids: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split ``full_ids`` into (context part, continuation part) at the longest common prefix
    with ``context_ids``. Tokens the tokenizer merged across the boundary go to the continuation.
    """
    n = 0
    for a, b in zip(context_ids, full_ids):
        if a != b:
            break
        n += 1
    return tuple(full_ids[:n]), tuple(full_ids[n:])




@dataclass
class ItemScores:
    """Scores of every item, as device tensors of shape ``[n_items]``.

    Attributes:
        logp_first: natural-log probability of the first continuation token (float64).
        logp_seq: chained log-probability of the whole continuation, the sum over its tokens of
            float32 log-softmax values accumulated in float64 (no floor: a never-seen keyword keeps
            its exact, very negative value).
        rank: 1-based rank of the first continuation token among the vocabulary; 0 (invalid) where
            the model's output was not finite.
        n_tokens: continuation length in tokens.

    Where the model returned non-finite logits (NaN, or +inf) at a position an item reads, its
    ``logp_first`` and ``logp_seq`` are NaN and its ``rank`` is 0; :attr:`nonfinite` flags them.
    A ``-inf`` logit (a token the model rules out) is finite output: its log-probability is -inf.
    """

    logp_first: torch.Tensor
    logp_seq: torch.Tensor
    rank: torch.Tensor
    n_tokens: torch.Tensor

    @property
    def p_first(self) -> torch.Tensor:
        return self.logp_first.exp()

    @property
    def p_seq(self) -> torch.Tensor:
        return self.logp_seq.exp()

    @property
    def nonfinite(self) -> torch.Tensor:
        """``[n_items]`` bool: the model's output at this item's positions was not finite."""
        return torch.isnan(self.logp_seq) | torch.isnan(self.logp_first)


@dataclass
class _Batch:
    rows: list[tuple[int, ...]]
    # one entry per scored token:
    tok_row: list[int]
    tok_pos: list[int]
    tok_id: list[int]
    tok_item: list[int]
    first_tok: list[int]  # index into the token list of each item's first token, per item below
    first_item: list[int]


class ScoringPlan:
    """Precomputed batches for scoring a fixed list of :class:`TokenizedItem`.

    Args:
        items: what to score.
        vocab_size: when known, token ids are validated against it now; otherwise on first run.
        max_positions: the model's maximum sequence length, when known.
        truncation: ``"error"`` (default) raises for a row longer than ``max_positions``;
            ``"left"`` drops leading context tokens and warns once.
        token_budget: upper bound on padded tokens (batch x length) per forward call.
        pad_id: id used for right padding (masked out; any valid id works).

    Raises:
        ValueError: an id outside the vocabulary, a negative id, a row too long for the model.
    """

    def __init__(
        self,
        items: Sequence[TokenizedItem],
        *,
        vocab_size: Optional[int] = None,
        max_positions: Optional[int] = None,
        truncation: Literal["error", "left"] = "error",
        token_budget: int = 16384,
        pad_id: int = 0,
    ) -> None:
        if truncation not in ("error", "left"):
            raise ValueError(f"Expected `truncation` to be 'error' or 'left', got {truncation!r}.")
        if not isinstance(token_budget, int) or token_budget < 1:
            raise ValueError(f"Expected `token_budget` to be a positive int, got {token_budget!r}.")
        if not items:
            raise ValueError("Expected at least one item to score, got none.")
        self.items = list(items)
        self.vocab_size = vocab_size
        self.max_positions = max_positions
        self.token_budget = token_budget
        self.pad_id = pad_id
        self._validated_vocab = False
        self.truncated: list[str] = []
        if vocab_size is not None:
            self.validate_vocab(vocab_size)
        needs, offsets = self._rows_needed(truncation)
        serve = self._serving_rows(needs)
        self._batches = self._pack(sorted(set(serve.values()), key=lambda r: (-len(r), r)))
        self._index_tokens(needs, offsets, serve)
        self.n_tokens = torch.tensor([len(it.target) for it in self.items], dtype=torch.long)
        self._device_cache: dict[torch.device, list[dict[str, torch.Tensor]]] = {}

    def _rows_needed(self, truncation: str) -> tuple[list[tuple[int, ...]], list[int]]:
        """Each item's forward row ``context + target[:-1]`` (logits are read at positions
        ``len(context) - 1 ..``), left-truncated to the model's length when allowed, and how many
        positions were dropped."""
        max_positions = self.max_positions
        needs: list[tuple[int, ...]] = []
        offsets: list[int] = []
        for it in self.items:
            row = it.context + it.target[:-1]
            drop = 0
            if max_positions is not None and len(row) > max_positions:
                if truncation == "error" or len(it.target) > max_positions:
                    raise ValueError(
                        f"Item {it.name!r}: context ({len(it.context)} tokens) + keyword"
                        f" ({len(it.target)} tokens) needs {len(row)} positions, more than the"
                        f" model's {max_positions}. Shorten the context, or pass"
                        " truncation='left' to drop its leading tokens."
                    )
                drop = len(row) - max_positions
                row = row[drop:]
                self.truncated.append(it.name)
            needs.append(row)
            offsets.append(drop)
        if self.truncated:
            warnings.warn(
                f"Left-truncated the context of {len(self.truncated)} item(s) to fit"
                f" {max_positions} positions: {self.truncated[:5]}",
                stacklevel=3,
            )
        return needs, offsets

    @staticmethod
    def _serving_rows(needs: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[int, ...]]:
        """The row that serves each needed row: itself, or a longer row it is a prefix of. In
        lexicographic order a row that is a prefix of any other row is a prefix of its successor, so
        one backwards sweep finds it."""
        unique = sorted(set(needs))
        serve: dict[tuple[int, ...], tuple[int, ...]] = {}
        for i in range(len(unique) - 1, -1, -1):
            row = unique[i]
            nxt = unique[i + 1] if i + 1 < len(unique) else None
            if nxt is not None and len(nxt) > len(row) and nxt[: len(row)] == row:
                serve[row] = serve[nxt]
            else:
                serve[row] = row
        return serve

    def _pack(self, rows: list[tuple[int, ...]]) -> list[_Batch]:
        """Length-sorted rows (longest first) packed into micro-batches under the token budget."""
        batches_rows: list[list[tuple[int, ...]]] = []
        current: list[tuple[int, ...]] = []
        for row in rows:
            width = len(current[0]) if current else len(row)
            if current and (len(current) + 1) * width > self.token_budget:
                batches_rows.append(current)
                current = []
            current.append(row)
        if current:
            batches_rows.append(current)
        return [_Batch(brows, [], [], [], [], [], []) for brows in batches_rows]

    def _index_tokens(
        self, needs: list[tuple[int, ...]], offsets: list[int], serve: dict[tuple[int, ...], tuple[int, ...]]
    ) -> None:
        """Record, per batch, the row, position and id of every scored token and its item."""
        where = {row: (b, r) for b, batch in enumerate(self._batches) for r, row in enumerate(batch.rows)}
        for idx, (it, need, drop) in enumerate(zip(self.items, needs, offsets)):
            b, r = where[serve[need]]
            batch = self._batches[b]
            start = len(it.context) - drop - 1
            for j, tok in enumerate(it.target):
                if j == 0:
                    batch.first_tok.append(len(batch.tok_id))
                    batch.first_item.append(idx)
                batch.tok_row.append(r)
                batch.tok_pos.append(start + j)
                batch.tok_id.append(tok)
                batch.tok_item.append(idx)

    @property
    def n_rows(self) -> int:
        return sum(len(b.rows) for b in self._batches)

    @property
    def n_forward_tokens(self) -> int:
        """Padded tokens fed to the model per pass (the cost floor of any scoring pass)."""
        return sum(len(b.rows) * len(b.rows[0]) for b in self._batches)

    @property
    def n_batches(self) -> int:
        return len(self._batches)

    def validate_vocab(self, vocab_size: int) -> None:
        for it in self.items:
            for part, ids in (("context", it.context), ("keyword", it.target)):
                bad = [t for t in ids if t < 0 or t >= vocab_size]
                if bad:
                    raise ValueError(
                        f"Item {it.name!r}: {part} token id {bad[0]} is outside the model's"
                        f" vocabulary [0, {vocab_size}). Use the tokenizer that matches the model."
                    )
        self.vocab_size = vocab_size
        self._validated_vocab = True

    def _tensors(self, device: torch.device) -> list[dict[str, torch.Tensor]]:
        cached = self._device_cache.get(device)
        if cached is not None:
            return cached
        out = []
        for b in self._batches:
            width = len(b.rows[0])
            ids = torch.full((len(b.rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(b.rows), width), dtype=torch.long)
            for r, row in enumerate(b.rows):
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, : len(row)] = 1
            t = {
                "ids": ids,
                "mask": mask,
                "tok_row": torch.tensor(b.tok_row, dtype=torch.long),
                "tok_pos": torch.tensor(b.tok_pos, dtype=torch.long),
                "tok_id": torch.tensor(b.tok_id, dtype=torch.long),
                "tok_item": torch.tensor(b.tok_item, dtype=torch.long),
                "first_tok": torch.tensor(b.first_tok, dtype=torch.long),
                "first_item": torch.tensor(b.first_item, dtype=torch.long),
            }
            moved = {k: v.to(device) for k, v in t.items()}
            if all(len(row) == width for row in b.rows):
                del moved["mask"]  # no padding: models take their faster unmasked path
            out.append(moved)
        self._device_cache[device] = out
        return out

    def run(self, forward: Forward, device: torch.device, head: Optional[ReadPositions] = None) -> ItemScores:
        """Score every item with ``forward(input_ids, attention_mask) -> logits [B, T, V]``.

        With ``head`` (a verified :class:`~probes.core.head.ReadPositions`), the model's output head
        projects only the positions read. Call inside :func:`isolated_eval` (or another no-grad
        context). Returns device tensors.
        """
        n = len(self.items)
        logp_first = torch.empty(n, dtype=torch.float64, device=device)
        logp_seq = torch.zeros(n, dtype=torch.float64, device=device)
        rank = torch.empty(n, dtype=torch.long, device=device)
        bad = torch.zeros(n, dtype=torch.long, device=device)
        for t in self._tensors(device):
            if head is not None:
                picked = head.logits(forward, t["ids"], t.get("mask"), t["tok_row"], t["tok_pos"])  # [N_tok, V]
            else:
                logits = forward(t["ids"], t.get("mask"))
                if logits.dim() != 3 or logits.shape[:2] != t["ids"].shape:
                    raise ValueError(
                        f"Expected logits of shape [batch, seq, vocab] = [{t['ids'].shape[0]},"
                        f" {t['ids'].shape[1]}, V] but got {list(logits.shape)}; the model must return"
                        " logits for every position (pass `logits_fn` to adapt it)."
                    )
                picked = logits[t["tok_row"], t["tok_pos"]]  # [N_tok, V]
            if not self._validated_vocab:
                self.validate_vocab(int(picked.shape[-1]))
            lp32, broken = checked_target_logprobs(picked, t["tok_id"])
            lp = lp32.double()  # [N_tok]; summed per item in float64
            logp_seq.index_add_(0, t["tok_item"], lp)
            bad.index_add_(0, t["tok_item"], broken.long())
            logp_first[t["first_item"]] = lp[t["first_tok"]]
            firsts = picked[t["first_tok"]]
            rank[t["first_item"]] = target_ranks(firsts, t["tok_id"][t["first_tok"]])
        broken_item = bad > 0
        nan = torch.full_like(logp_seq, float("nan"))
        logp_seq = torch.where(broken_item, nan, logp_seq)
        logp_first = torch.where(broken_item, nan, logp_first)
        rank = torch.where(broken_item, torch.zeros_like(rank), rank)
        return ItemScores(logp_first, logp_seq, rank, self.n_tokens.to(device))


