"""The one score convention: how a (context, continuation) text pair becomes token ids.

Every probe that scores a continuation (keywords, learning samples and their priming prefixes,
scored answer formats, label spaces, benchmark options, IFD answers) goes through
:func:`tokenize_continuation`, so every number the library prints means the same thing:

* The context is tokenized **exactly as written**. The separator (default one space) and any
  leading whitespace belong to the continuation. This is the convention of the standard
  likelihood-evaluation harnesses: the score of ``" vermilion"`` after ``"The colour of a pearl
  is"`` is read whether the tokenizer merges the space into the word (``Ġvermilion``) or splits it
  off as a lone token (``Ġ``, ``verm``, ``ilion``); the library never puts the separator into the
  context, so a context ending in a lone space token (rare in BPE training text) is only fed when
  the user wrote the context that way. A context that ends with whitespace followed by a
  continuation that starts with whitespace is flagged (usually a doubled separator).
* The continuation's tokens are those of the *joint* tokenization ``context + continuation`` after
  its longest common prefix with the context's own tokens; the score is their chained probability
  (``logp_seq``), and ``logp_first`` is the probability of the first of them.
* Special tokens a tokenizer adds on every encode (a BOS at the start, an EOS at the end, found by
  encoding the empty string) are recognised: the leading ones stay in front of the context, the
  trailing ones are dropped from both encodings before the split, so a trailing EOS never lands in
  the continuation.

A merge across the boundary (the joint tokenization changes the context's last tokens) or a
continuation whose tokens in context differ from the continuation tokenized alone is reported by
:func:`boundary_warnings`: the score is then still well defined (the joint tokens), but it is not
the probability of the continuation as the tokenizer would write it on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "CONVENTION",
    "Affixes",
    "ContinuationTokens",
    "boundary_warnings",
    "checked_ids",
    "special_affixes",
    "tokenize_continuation",
]

Encode = Callable[[str], list[int]]

#: Stored in every scoring probe's description, so a run log says which convention its scores use
#: (logs written before this convention have no such key: their separator token was in the context).
CONVENTION = "continuation-v2: context as written, separator scored with the keyword"


def checked_ids(ids: object, text: str) -> list[int]:
    """``ids`` as a list of ints, or a :class:`ValueError` naming what the tokenizer returned."""
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):  # a tensor or an array
        ids = ids.tolist()  # type: ignore[union-attr]
    if isinstance(ids, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return [int(i) for i in ids]
    shown = repr(ids)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ValueError(
        f"The tokenizer returned {type(ids).__name__} {shown} for {text[:60]!r}; expected a list of int token"
        " ids. Pass a Hugging Face tokenizer, a tokenizers.Tokenizer, or a callable str -> list[int]."
    )


@dataclass(frozen=True)
class Affixes:
    """Special tokens a tokenizer adds to every encoding: ``head`` at the start, ``tail`` at the end."""

    head: tuple[int, ...] = ()
    tail: tuple[int, ...] = ()

    def strip(self, ids: Sequence[int]) -> tuple[int, ...]:
        out = tuple(ids)
        if self.head and out[: len(self.head)] == self.head:
            out = out[len(self.head) :]
        if self.tail and len(out) >= len(self.tail) and out[len(out) - len(self.tail) :] == self.tail:
            out = out[: len(out) - len(self.tail)]
        return out


def special_affixes(encode: Encode) -> Affixes:
    """The special tokens ``encode`` adds around every text, found from the empty string.

    ``encode("")`` is empty for a tokenizer that adds nothing. Otherwise the part of it that starts
    ``encode("a")`` is the head (a BOS) and the rest the tail (an EOS).
    """
    empty = tuple(checked_ids(encode(""), ""))
    if not empty:
        return Affixes()
    probe = tuple(checked_ids(encode("a"), "a"))
    n = _common_prefix(empty, probe)
    head, tail = empty[:n], empty[n:]
    if tail and probe[len(probe) - len(tail) :] != tail:
        tail = ()
    return Affixes(head, tail)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class ContinuationTokens:
    """One tokenized (context, continuation) pair.

    Attributes:
        context: ids fed before the continuation (leading special tokens and ``bos_id`` included).
        continuation: ids whose chained probability is the score.
        context_text, continuation_text: the two texts.
        merged: the joint tokenization changed the context's own last tokens (a merge across the
            boundary); those context characters are then scored as part of the continuation.
        alone: the continuation tokenized on its own (special tokens removed), for the warning.
    """

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    context_text: str
    continuation_text: str
    merged: bool
    alone: tuple[tuple[int, ...], ...]

    @property
    def doubled(self) -> bool:
        """The context ends with whitespace and the continuation starts with it (a doubled separator)."""
        return bool(self.context_text[-1:].isspace() and self.continuation_text[:1].isspace())

    @property
    def differs(self) -> bool:
        """The scored tokens are not how the tokenizer writes the continuation alone."""
        return self.merged or self.continuation not in self.alone


def tokenize_continuation(
    encode: Encode,
    context: str,
    continuation: str,
    *,
    affixes: Optional[Affixes] = None,
    bos_id: Optional[int] = None,
) -> ContinuationTokens:
    """Tokenize ``continuation`` after ``context`` under the convention of the module docstring.

    Args:
        encode: ``str -> list[int]`` (see :func:`probes.core.model_io.as_encoder`).
        context: the text conditioned on, as the user wrote it.
        continuation: the text scored, separator included (e.g. ``" vermilion"``).
        affixes: the tokenizer's special tokens (:func:`special_affixes`; computed when omitted).
        bos_id: a token to put first when the tokenizer adds no leading special token.

    Raises:
        ValueError: the tokenizer returns something other than a list of ints, the continuation
            tokenizes to nothing, or the context is empty with no start token to condition on.
    """
    affixes = special_affixes(encode) if affixes is None else affixes
    ctx = affixes.strip(checked_ids(encode(context), context)) if context else ()
    joint_text = context + continuation
    full = affixes.strip(checked_ids(encode(joint_text), joint_text))
    n = _common_prefix(ctx, full)
    cont = full[n:]
    if not cont:
        raise ValueError(
            f"Continuation {continuation!r} tokenizes to nothing after context {context!r}; use a continuation"
            " the tokenizer can represent."
        )
    start = affixes.head
    if bos_id is not None and (not start or start[0] != bos_id):
        start = (bos_id, *start)
    if n == 0 and not start:
        raise ValueError(
            f"Context {context!r} tokenizes to nothing before continuation {continuation!r}; give a non-empty"
            " context, or set `bos_id` so the first token has something to condition on."
        )
    alone = [affixes.strip(checked_ids(encode(continuation), continuation))]
    bare = continuation.lstrip()
    if bare != continuation and bare:  # SentencePiece writes a leading space as the word's own "▁" marker
        alone.append(affixes.strip(checked_ids(encode(bare), bare)))
    return ContinuationTokens(
        context=start + full[:n],
        continuation=cont,
        context_text=context,
        continuation_text=continuation,
        merged=n < len(ctx),
        alone=tuple(alone),
    )


def boundary_warnings(
    named: Sequence[tuple[str, ContinuationTokens]],
    pieces: Optional[Callable[[Sequence[int]], list[str]]] = None,
    *,
    limit: int = 5,
) -> list[str]:
    """One readable message per pair whose scored tokens differ from the continuation alone.

    Args:
        named: ``(pair name, tokens)`` for every pair.
        pieces: ``ids -> token strings`` (from :func:`probes.core.model_io.token_pieces`), to show tokens
            as text; ids only when None.
        limit: pairs described in full; the rest are counted.
    """

    def show(ids: Sequence[int]) -> str:
        if pieces is None:
            return str(list(ids))
        try:
            return "[" + ", ".join(f"{i}:{p!r}" for i, p in zip(ids, pieces(ids))) + "]"
        except Exception:  # a decoder that cannot show these ids: fall back to the ids
            return str(list(ids))

    bad = [(name, t) for name, t in named if t.differs or t.doubled]
    out = []
    for name, t in bad[:limit]:
        if t.doubled and not t.differs:
            out.append(
                f"Pair {name!r}: the context {t.context_text[-40:]!r} ends with whitespace and the continuation"
                f" {t.continuation_text!r} starts with whitespace; the separator is scored with the keyword, so strip"
                " the context's trailing whitespace (or pass separator='')."
            )
            continue
        why = (
            "the joint tokenization merges the end of the context into it"
            if t.merged
            else f"alone it tokenizes to {show(t.alone[0])}"
        )
        out.append(
            f"Pair {name!r}: continuation {t.continuation_text!r} after {t.context_text[-40:]!r} is scored as"
            f" tokens {show(t.continuation)}, but {why}. The score is the probability of these in-context tokens."
        )
    if len(bad) > limit:
        out.append(f"... and {len(bad) - limit} more pair(s) whose in-context tokens differ the same way.")
    return out
