"""What the frequency probe measures per item, tokenized once.

Items are keyword pairs (:class:`~probes.keyword.spec.ProbePair`: a named context and keyword; other
item types, such as learning samples, format prompts or benchmark questions, are given as the pair
of their context and the word to count). For each item:

* the keyword's *forms*: the keyword tokenized alone and with a leading space (and without it, when
  the keyword starts with one), distinct ones only, special tokens stripped;
* the n-gram codes of its context (for context n-gram counts) and of its full text
  ``context + separator + keyword`` (for lexical similarity), see :mod:`probes.frequency.measures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from probes.core.model_io import Encoder
from probes.core.tokenize import special_affixes
from probes.keyword.spec import ProbePair, ProbeSet

__all__ = ["ItemTokens", "as_probe_set", "codes_of", "tokenize_items"]


@dataclass(frozen=True)
class ItemTokens:
    """Token views of one item.

    Attributes:
        name: the item's name.
        forms: the keyword's distinct token forms (alone, with a leading space).
        text_ids: ``context + separator + keyword`` tokenized (the item's text for similarity).
        context_codes: distinct n-gram codes of the context's tokens.
        text_codes: distinct n-gram codes of ``text_ids``.
    """

    name: str
    forms: tuple[tuple[int, ...], ...]
    text_ids: tuple[int, ...]
    context_codes: tuple[int, ...]
    text_codes: tuple[int, ...]


def as_probe_set(items: ProbeSet | Iterable[ProbePair | Sequence[object]], separator: str = " ") -> ProbeSet:
    """The items as a :class:`~probes.keyword.spec.ProbeSet` (pairs or ``(name, context, keyword)``
    tuples). Only text pairs are accepted (forms need the tokenizer).

    Raises:
        ValueError: no items, a malformed item, or a pair given as token ids.
    """
    probe_set = items if isinstance(items, ProbeSet) else ProbeSet(items, separator=separator)
    for pair in probe_set:
        if not pair.is_text:
            raise ValueError(
                f"Item {pair.name!r} is given as token ids; the frequency probe needs text items (it tokenizes"
                " the keyword with and without a leading space)."
            )
    return probe_set


def codes_of(ids: Sequence[int], n: int) -> tuple[int, ...]:
    """Distinct n-gram codes of ``ids`` (the definition of :func:`probes.frequency.measures.ngram_codes`),
    in first-seen order, computed in plain Python.

    Raises:
        ValueError: an id >= 2**21 (the code would collide).
    """
    seen: dict[int, None] = {}
    for t in range(len(ids) - n + 1):
        code = 0
        for k in range(n):
            g = int(ids[t + k])
            if not 0 <= g < (1 << 21):
                raise ValueError(f"Token id {g} is outside 0..2**21-1; n-gram codes pack ids into 21 bits.")
            code = (code << 21) | g
        seen[code] = None
    return tuple(seen)


def tokenize_items(probe_set: ProbeSet, encode: Encoder, *, n: int) -> list[ItemTokens]:
    """Tokenize every item (see the module docstring).

    Raises:
        ValueError: a keyword that tokenizes to nothing.
    """
    affixes = special_affixes(encode)
    out = []
    for pair in probe_set:
        keyword = str(pair.keyword)
        bare = keyword.lstrip(" ")
        forms: dict[tuple[int, ...], None] = {}
        for text in (bare, " " + bare):
            ids = tuple(affixes.strip(encode(text)))
            if ids:
                forms[ids] = None
        if not forms:
            raise ValueError(f"Item {pair.name!r}: keyword {keyword!r} tokenizes to nothing.")
        context_ids = tuple(affixes.strip(encode(str(pair.context))))
        text_ids = tuple(affixes.strip(encode(str(pair.context) + probe_set.separator + keyword)))
        out.append(
            ItemTokens(
                pair.name, tuple(forms), text_ids, codes_of(context_ids, n), codes_of(text_ids, n)
            )
        )
    return out
