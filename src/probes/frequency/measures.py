"""The math of the frequency probe, as pure functions on the device (no host round-trip).

**Keyword occurrences at word boundaries.** A keyword has one or more *forms* (token sequences:
the word tokenized alone and with a leading space, since many tokenizers tokenize ``"word"`` and
``" word"`` differently). A form matches at tokens ``[s, e]`` of a row when every id equals the
form's and every position is a real token. The match is at a word boundary when neither the token
before ``s`` ends with a word character while the form's first token starts with one, nor the token
after ``e`` starts with a word character while the form's last token ends with one (word character:
``str.isalnum()`` of the token's text; a row's start and end and padding are boundaries). An
occurrence of the keyword is a distinct *end position* ``e`` at which any of its forms matches at a
boundary, so ``" word"`` and ``"word"`` matching the same text count once.

**N-gram codes (the fixed hashing).** An n-gram of token ids ``(g_0, ..., g_{n-1})``, ``n <= 3``, ids
``< 2**21``, is coded as ``sum_k g_k * 2**(21 * (n - 1 - k))`` (bit packing, an int64). The code is
injective, so the hashing has no collisions and every lexical measure below is exact. N-grams that
touch padding are dropped.

**Lexical similarity.** For an item with n-gram set ``G_i`` and a sample with n-gram set ``G_s``:
containment ``|G_i & G_s| / |G_i|`` (how much of the item the sample holds) and Jaccard
``|G_i & G_s| / |G_i | G_s|`` (0 where both sets are empty).

**Representational similarity.** Cosine between mean-pooled (over real tokens) hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "CODE_BITS",
    "MAX_N",
    "boundary_tables",
    "context_ngram_counts",
    "keyword_hits",
    "lexical_similarity",
    "mean_pool",
    "ngram_codes",
    "ngram_table",
    "pack_forms",
    "pairwise_cosine",
    "sample_ngram_sets",
]

CODE_BITS = 21
MAX_N = 3
_PAD = -1


def boundary_tables(token_text: Callable[[int], str], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(starts_word, ends_word)``: ``[V]`` bool, whether token ``v``'s text starts / ends with a
    word character (``str.isalnum``)."""
    starts = torch.zeros(vocab_size, dtype=torch.bool)
    ends = torch.zeros(vocab_size, dtype=torch.bool)
    for v in range(vocab_size):
        text = token_text(v) or ""
        starts[v] = bool(text) and text[0].isalnum()
        ends[v] = bool(text) and text[-1].isalnum()
    return starts, ends


def pack_forms(forms: Sequence[Sequence[Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Forms per item, right-aligned: ``([I, F, M] int64 padded on the left with -1, [I, F] lengths)``
    (``F`` the most forms of an item; a missing form has length 0 and never matches).

    Raises:
        ValueError: an item without forms, an empty form or a negative id.
    """
    n_forms = max(len(f) for f in forms)
    width = max(len(form) for item in forms for form in item)
    packed = torch.full((len(forms), n_forms, width), _PAD, dtype=torch.long)
    lengths = torch.zeros((len(forms), n_forms), dtype=torch.long)
    for i, item in enumerate(forms):
        if not item:
            raise ValueError(f"Item #{i} has no keyword form to count.")
        for j, form in enumerate(item):
            if len(form) == 0 or any(int(t) < 0 for t in form):
                raise ValueError(f"Item #{i}: keyword form {list(form)} is empty or has a negative id.")
            packed[i, j, width - len(form) :] = torch.as_tensor([int(t) for t in form])
            lengths[i, j] = len(form)
    return packed, lengths


def _valid(ids: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()


def keyword_hits(
    ids: torch.Tensor,
    forms: torch.Tensor,
    lengths: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    starts_word: Optional[torch.Tensor] = None,
    ends_word: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Keyword occurrences per row and item: ``[B, I]`` int64 (see the module docstring).

    Args:
        ids: ``[B, T]`` token ids; mask: ``[B, T]`` (0 = padding) or None.
        forms, lengths: from :func:`pack_forms` (on the device of ``ids``).
        starts_word, ends_word: ``[V]`` bool tables (:func:`boundary_tables`); None counts every
            match (no boundary check).
    """
    valid = _valid(ids, mask)
    x = ids.long().masked_fill(~valid, _PAD)
    n_rows, width = x.shape
    n_items, n_forms, m = forms.shape
    flat = forms.reshape(-1, m)  # [P, M]
    flen = lengths.reshape(-1)  # [P]
    xl = F.pad(x, (m - 1, 0), value=_PAD)  # position e of x is xl[:, e + m - 1]
    hit = torch.ones((n_rows, width, flat.shape[0]), dtype=torch.bool, device=x.device)
    for k in range(m):  # the form's token k (right-aligned) against x[e - (m - 1 - k)]
        active = (m - 1 - k) < flen  # [P]
        eq = xl[:, k : k + width, None] == flat[None, None, :, k]
        hit &= eq | ~active
    hit &= (flen > 0)[None, None, :]
    if starts_word is not None and ends_word is not None:
        sw, ew = starts_word.to(x.device), ends_word.to(x.device)
        tok = x.clamp(min=0)
        real = x >= 0
        s_tok = torch.where(real, sw[tok], torch.zeros_like(real))  # [B, T]
        e_tok = torch.where(real, ew[tok], torch.zeros_like(real))
        first = flat[torch.arange(flat.shape[0], device=x.device), (m - flen).clamp(max=m - 1)].clamp(min=0)
        last = flat[:, m - 1].clamp(min=0)
        next_starts = F.pad(s_tok[:, 1:], (0, 1), value=False)  # token after e starts a word
        hit &= ~(next_starts[:, :, None] & ew[last][None, None, :])
        # token before s = e - len + 1, i.e. x[e - len]; gather per form length
        e_idx = torch.arange(width, device=x.device)[:, None] - flen[None, :]  # [T, P]
        before_ok = e_idx >= 0
        before_ends = e_tok[:, e_idx.clamp(min=0)] & before_ok[None]  # [B, T, P]
        hit &= ~(before_ends & sw[first][None, None, :])
    per_item = hit.reshape(n_rows, width, n_items, n_forms).any(dim=3)  # distinct end positions
    return per_item.sum(dim=1)


def ngram_codes(ids: torch.Tensor, n: int, *, mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of every n-gram of every row: ``([B, T - n + 1] int64, [B, T - n + 1] bool valid)``.

    Raises:
        ValueError: ``n`` outside 1..3.
    """
    if not (isinstance(n, int) and 1 <= n <= MAX_N):
        raise ValueError(f"Expected the n-gram size `n` in 1..{MAX_N} (codes are packed into 63 bits), got {n!r}.")
    valid = _valid(ids, mask)
    x = ids.long()
    width = x.shape[1] - n + 1
    if width <= 0:
        empty = torch.zeros((x.shape[0], 0), dtype=torch.long, device=x.device)
        return empty, empty.bool()
    code = torch.zeros((x.shape[0], width), dtype=torch.long, device=x.device)
    ok = torch.ones((x.shape[0], width), dtype=torch.bool, device=x.device)
    for k in range(n):
        code = (code << CODE_BITS) | x[:, k : k + width]
        ok &= valid[:, k : k + width]
    return code, ok


def ngram_table(
    item_ngrams: Sequence[Sequence[int]], *, device: Optional[torch.device] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted distinct codes of every item and the incidence ``[U, I]`` float32 (1 where code
    ``u`` is in item ``i``'s set)."""
    table = sorted({int(c) for codes in item_ngrams for c in codes})
    index = {c: j for j, c in enumerate(table)}
    inc = torch.zeros((len(table), len(item_ngrams)), dtype=torch.float32)
    for i, codes in enumerate(item_ngrams):
        for c in set(int(c) for c in codes):
            inc[index[c], i] = 1.0
    return torch.as_tensor(table, dtype=torch.long, device=device), inc.to(device)


def _lookup(codes: torch.Tensor, ok: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if table.numel() == 0:
        return torch.zeros_like(codes), torch.zeros_like(ok)
    idx = torch.searchsorted(table, codes).clamp(max=table.numel() - 1)
    return idx, ok & (table[idx] == codes)


def context_ngram_counts(
    codes: torch.Tensor, ok: torch.Tensor, table: torch.Tensor, incidence: torch.Tensor
) -> torch.Tensor:
    """Occurrences in the batch of each item's distinct context n-grams, summed per item: ``[I]``
    float64 (an n-gram shared by two items counts for both)."""
    idx, found = _lookup(codes, ok, table)
    per_code = torch.zeros(table.numel(), dtype=torch.float32, device=codes.device)
    per_code.index_add_(0, idx.reshape(-1), found.reshape(-1).float())
    return (per_code @ incidence).double()


def sample_ngram_sets(codes: torch.Tensor, ok: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(present [B, U] float32, set sizes [B] float32)``: which table codes each sample holds,
    and how many distinct n-grams each sample has."""
    idx, found = _lookup(codes, ok, table)
    present = torch.zeros((codes.shape[0], max(1, table.numel())), dtype=torch.float32, device=codes.device)
    present.scatter_add_(1, torch.where(found, idx, torch.zeros_like(idx)), found.float())
    present = (present[:, : table.numel()] > 0).float()
    big = torch.iinfo(torch.long).max
    s = torch.where(ok, codes, torch.full_like(codes, big)).sort(dim=1).values
    new = torch.ones_like(s, dtype=torch.bool)
    if s.shape[1] > 1:
        new[:, 1:] = s[:, 1:] != s[:, :-1]
    sizes = (new & (s != big)).sum(dim=1).float()
    return present, sizes


def lexical_similarity(
    present: torch.Tensor, sample_sizes: torch.Tensor, incidence: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(containment [B, I], jaccard [B, I])`` float64 from :func:`sample_ngram_sets` and the
    incidence of :func:`ngram_table`."""
    inter = (present @ incidence).double()  # [B, I]
    item_sizes = incidence.sum(dim=0).double()  # [I]
    containment = torch.where(item_sizes > 0, inter / item_sizes.clamp(min=1), torch.zeros_like(inter))
    union = item_sizes[None, :] + sample_sizes.double()[:, None] - inter
    jaccard = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    return containment, jaccard


def mean_pool(states: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean over real positions of ``[B, T, C]`` states: ``[B, C]`` float32."""
    h = states.float()
    if mask is None:
        return h.mean(dim=1)
    w = mask.to(h.dtype)[:, :, None]
    return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def pairwise_cosine(samples: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Cosine between every sample and every item vector: ``[B, I]`` float64."""
    a = F.normalize(samples.double(), dim=1)
    b = F.normalize(items.double(), dim=1)
    return a @ b.T
