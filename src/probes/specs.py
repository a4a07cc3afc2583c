"""What to probe: frozen, validated-on-creation specifications.

A :class:`ProbePair` is a named (context, keyword) pair. Context and keyword are either both text
(tokenized by the engine's tokenizer) or both pre-tokenized id sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Union

__all__ = ["ProbePair", "ProbeSet", "TextOrIds"]

TextOrIds = Union[str, tuple[int, ...]]


def _as_text_or_ids(value: object, what: str, pair: str) -> TextOrIds:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    try:  # torch / numpy integer vectors
        import torch

        if isinstance(value, torch.Tensor) and value.dim() == 1 and not value.is_floating_point():
            return tuple(int(v) for v in value.tolist())
    except ImportError:  # pragma: no cover
        pass
    raise ValueError(
        f"Probe pair {pair!r}: expected `{what}` to be a string or a sequence of int token ids,"
        f" got {type(value).__name__} {value!r}."
    )


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
        ctx = _as_text_or_ids(self.context, "context", pair)
        kw = _as_text_or_ids(self.keyword, "keyword", pair)
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
        if not converted:
            raise ValueError("Expected at least one probe pair, got none.")
        seen: set[str] = set()
        for p in converted:
            if p.name in seen:
                raise ValueError(f"Duplicate probe pair name {p.name!r}: names must be unique.")
            seen.add(p.name)
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
