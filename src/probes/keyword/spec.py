"""What to probe: frozen, validated-on-creation specifications.

A :class:`ProbePair` is a named (context, keyword) pair. Context and keyword are either both text
(tokenized by the engine's tokenizer) or both pre-tokenized id sequences.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from probes.core.checks import TextOrIds, named_items, text_or_ids
from probes.core.model_io import Encoder
from probes.core.plan import TokenizedItem
from probes.core.tokenize import Affixes, ContinuationTokens, boundary_warnings, special_affixes, tokenize_continuation

__all__ = ["ProbePair", "ProbeSet", "TextOrIds", "tokenize_pairs"]





@dataclass(frozen=True)
class ProbePair:
    """A named (context, keyword) pair whose P(keyword | context) is read.

    Args:
        name: unique identifier within a :class:`ProbeSet`.
        context: the text (or ids) the keyword follows.
        keyword: the text (or ids) to score.
        group: optional label used to aggregate pairs (theme, category...).

    Raises:
        ValueError: on an empty name, keyword or context, a non-string entry, or context and
            keyword of different kinds (one text, one ids).

    Example::

        ProbePair("sand", "the colour of sand is", "vermilion", group="colour")
    """

    name: str
    context: TextOrIds
    keyword: TextOrIds
    group: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected `name` to be a non-empty string, got {self.name!r}.")
        pair = self.name
        ctx = text_or_ids(self.context, "context", f"Probe pair {pair!r}", nonempty=False)
        kw = text_or_ids(self.keyword, "keyword", f"Probe pair {pair!r}", nonempty=False)
        if isinstance(ctx, str) != isinstance(kw, str):
            raise ValueError(
                f"Probe pair {pair!r}: context and keyword must both be text or both be token ids,"
                f" got {type(ctx).__name__} and {type(kw).__name__}."
            )
        if (isinstance(kw, str) and not kw.strip()) or len(kw) == 0:
            raise ValueError(
                f"Probe pair {pair!r}: expected `keyword` to be non-empty, got {kw!r}."
                " Give the word whose probability should be read, e.g. 'vermilion'."
            )
        if len(ctx) == 0:
            raise ValueError(
                f"Probe pair {pair!r}: expected `context` to be non-empty, got {ctx!r}."
                " Give the text the keyword follows, e.g. 'the colour of sand is'."
            )
        if not isinstance(self.group, str):
            raise ValueError(f"Probe pair {pair!r}: expected `group` to be a string, got {self.group!r}.")
        object.__setattr__(self, "context", ctx)
        object.__setattr__(self, "keyword", kw)

    @property
    def is_text(self) -> bool:
        return isinstance(self.keyword, str)

    def to_json(self) -> dict[str, object]:
        def enc(v: TextOrIds) -> object:
            return v if isinstance(v, str) else list(v)

        return {"name": self.name, "context": enc(self.context), "keyword": enc(self.keyword), "group": self.group}


@dataclass(frozen=True)
class ProbeSet:
    """An ordered collection of uniquely named :class:`ProbePair` objects.

    Args:
        pairs: the pairs; ``(name, context, keyword)`` or ``(name, context, keyword, group)``
            tuples are accepted and converted.
        separator: inserted between a text context and its keyword (default one space). Use
            ``""`` when contexts already end with the separator.

    Raises:
        ValueError: on no pairs, duplicate names, or a malformed tuple.
    """

    pairs: tuple[ProbePair, ...]
    separator: str = " "

    def __init__(self, pairs: Iterable[ProbePair | Sequence[object]], *, separator: str = " ") -> None:
        converted: list[ProbePair] = []
        for i, p in enumerate(pairs):
            if isinstance(p, ProbePair):
                converted.append(p)
            elif isinstance(p, (tuple, list)) and len(p) in (3, 4):
                converted.append(ProbePair(*p))  # type: ignore[arg-type]
            else:
                raise ValueError(
                    f"Probe pair #{i}: expected a ProbePair or a (name, context, keyword[, group]) tuple, got {p!r}."
                )
        named_items(converted, "probe pair")
        if not isinstance(separator, str):
            raise ValueError(f"Expected `separator` to be a string, got {separator!r}.")
        object.__setattr__(self, "pairs", tuple(converted))
        object.__setattr__(self, "separator", separator)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.pairs)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def to_json(self) -> dict[str, object]:
        return {"separator": self.separator, "pairs": [p.to_json() for p in self.pairs]}

def tokenize_pairs(
    probe_set: ProbeSet, encode: Optional[Encoder], *, bos_id: Optional[int] = None
) -> list[TokenizedItem]:
    """Tokenize every pair of ``probe_set`` under the library's one score convention
    (:mod:`probes.core.tokenize`): the context as written, the separator and the keyword together
    as the continuation, split from the joint tokenization.

    Warns, once per affected pair (up to five, then a count), when the continuation's tokens in
    context differ from the continuation tokenized alone.

    Raises:
        ValueError: a text pair with no tokenizer, a keyword that tokenizes to nothing, an empty
            context with no start token, or a tokenizer that returns anything but a list of ints.
    """
    prefix = (bos_id,) if bos_id is not None else ()
    items: list[TokenizedItem] = []
    sep = probe_set.separator
    named: list[tuple[str, ContinuationTokens]] = []
    affixes: Optional[Affixes] = None
    for pair in probe_set:
        if not pair.is_text:
            ctx, kw = tuple(pair.context), tuple(pair.keyword)  # type: ignore[arg-type]
            items.append(TokenizedItem(pair.name, prefix + ctx, kw))
            continue
        if encode is None:
            raise ValueError(
                f"Probe pair {pair.name!r} is text but no tokenizer was given: pass `tokenizer=`"
                " or give the pair as token ids."
            )
        if affixes is None:
            affixes = special_affixes(encode)
        try:
            tokens = tokenize_continuation(
                encode, str(pair.context), sep + str(pair.keyword), affixes=affixes, bos_id=bos_id
            )
        except ValueError as err:
            raise ValueError(f"Probe pair {pair.name!r}: {err}") from None
        named.append((pair.name, tokens))
        items.append(TokenizedItem(pair.name, tokens.context, tokens.continuation))
    for message in boundary_warnings(named, getattr(encode, "pieces", None)):
        warnings.warn(message, stacklevel=2)
    return items
