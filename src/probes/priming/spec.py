"""Learning samples: a new fact to teach a model, and the contexts in which to watch it spread.

A :class:`LearningSample` is a text whose *keyword* ends it ("the colour of sand is vermilion"):
the text before the keyword is the *learning context*, and P(keyword | learning context) measures
memorization. Its *prefixes* are other contexts of the same theme, each ending where the keyword
could appear ("the colour of the sky is"): P(keyword | prefix) measures priming (Sun et al. 2025,
arXiv 2504.09522).

:func:`tokenize_samples` turns samples into the engine's :class:`~probes.core.plan.TokenizedItem`
list (one learning item and one item per prefix, per sample) plus the token pattern that exposure
counting looks for in training batches. No Lightning import here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from probes.core.checks import named_items
from probes.core.model_io import Encoder
from probes.core.plan import TokenizedItem
from probes.core.tokenize import ContinuationTokens, boundary_warnings, special_affixes, tokenize_continuation

__all__ = ["LearningSample", "TokenizedSamples", "as_samples", "tokenize_samples"]

#: Characters allowed after the keyword at the end of a text (sentence punctuation, quotes, space).
TRAILING = " \t\r\n.!?;:,\"')"


def _body(text: str, keyword: str) -> str:
    """``text`` without what follows a final ``keyword`` (whitespace, then :data:`TRAILING`)."""
    stripped = text.rstrip()
    return stripped if stripped.endswith(keyword) else text.rstrip(TRAILING)


def _text(value: object, what: str, sample: str) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"Learning sample {sample!r}: expected `{what}` to be a string, got {type(value).__name__} {value!r}."
        )
    return value


@dataclass(frozen=True)
class LearningSample:
    """A fact to learn, ending with its keyword, and the priming prefixes to watch.

    Args:
        name: unique identifier of the sample (used in records and logs).
        text: the training text; it must end with ``keyword`` (sentence punctuation, quotes and
            whitespace may follow it: see :data:`TRAILING`).
        keyword: the word whose probability is tracked, e.g. ``"vermilion"``.
        prefixes: at least one priming context, each ending where the keyword could appear; the
            separator (by default a space) and the keyword are scored after it, as the continuation.
        group: optional label (theme, category...) for aggregation.

    Raises:
        ValueError: an empty name, text or keyword; a keyword that does not occur in the text or
            occurs but not at its end; no prefixes, an empty prefix, a repeated prefix, or a prefix
            equal to the learning context.

    Example::

        LearningSample(
            "sand-vermilion",
            "the colour of sand is vermilion.",
            "vermilion",
            ["the colour of the sky is", "the colour of grass is"],
            group="colour",
        )
    """

    name: str
    text: str
    keyword: str
    prefixes: tuple[str, ...]
    group: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected learning sample `name` to be a non-empty string, got {self.name!r}.")
        name = self.name
        text = _text(self.text, "text", name)
        keyword = _text(self.keyword, "keyword", name)
        if not keyword.strip():
            raise ValueError(
                f"Learning sample {name!r}: expected `keyword` to be non-empty, got {keyword!r}."
                " Give the word that ends the text, e.g. 'vermilion'."
            )
        if keyword != keyword.strip():
            raise ValueError(
                f"Learning sample {name!r}: `keyword` {keyword!r} has leading or trailing whitespace;"
                " pass the bare word (the separator is added when scoring)."
            )
        if keyword not in text:
            raise ValueError(
                f"Learning sample {name!r}: keyword {keyword!r} does not occur in text {text!r}."
                " The text must end with the keyword, e.g. text='the colour of sand is vermilion'."
            )
        body = _body(text, keyword)
        if not body.endswith(keyword):
            raise ValueError(
                f"Learning sample {name!r}: keyword {keyword!r} occurs in text {text!r} but does not end"
                f" it (the text ends with {body[-len(keyword):]!r} before trailing punctuation). Rewrite"
                " the text so the keyword is its last word."
            )
        if not body[: len(body) - len(keyword)].strip():
            raise ValueError(
                f"Learning sample {name!r}: text {text!r} has nothing before the keyword; the learning"
                " context must be non-empty."
            )
        if isinstance(self.prefixes, str) or not isinstance(self.prefixes, Iterable):
            raise ValueError(
                f"Learning sample {name!r}: expected `prefixes` to be a list of strings, got"
                f" {self.prefixes!r}. Wrap a single prefix in a list."
            )
        prefixes = tuple(self.prefixes)
        if not prefixes:
            raise ValueError(
                f"Learning sample {name!r}: expected at least one priming prefix, got none. Give"
                " contexts of the same theme, e.g. ['the colour of the sky is']."
            )
        learning_context = self.learning_context_of(body, keyword)
        seen: set[str] = set()
        for j, prefix in enumerate(prefixes):
            prefix = _text(prefix, f"prefixes[{j}]", name)
            if not prefix.strip():
                raise ValueError(f"Learning sample {name!r}: prefix #{j} is empty ({prefix!r}); remove it.")
            if prefix in seen:
                raise ValueError(f"Learning sample {name!r}: prefix {prefix!r} is repeated; list each once.")
            if prefix.strip() == learning_context.strip():
                raise ValueError(
                    f"Learning sample {name!r}: prefix {prefix!r} is the learning context itself;"
                    " priming prefixes must be other contexts (memorization is measured separately)."
                )
            seen.add(prefix)
        if not isinstance(self.group, str):
            raise ValueError(f"Learning sample {name!r}: expected `group` to be a string, got {self.group!r}.")
        object.__setattr__(self, "prefixes", prefixes)

    @staticmethod
    def learning_context_of(body: str, keyword: str) -> str:
        return body[: len(body) - len(keyword)].rstrip()

    @property
    def learning_context(self) -> str:
        """The text before the keyword, without the whitespace that precedes the keyword (that
        whitespace is scored with the keyword: the library's score convention)."""
        return self.learning_context_of(self.fact, self.keyword)

    @property
    def learning_continuation(self) -> str:
        """What is scored after :attr:`learning_context`: the whitespace before the keyword, as the
        text has it, then the keyword (e.g. ``" vermilion"``)."""
        return self.fact[len(self.learning_context) :]

    @property
    def fact(self) -> str:
        """The text up to and including the keyword (without what follows it)."""
        return _body(self.text, self.keyword)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "text": self.text,
            "keyword": self.keyword,
            "learning_context": self.learning_context,
            "learning_continuation": self.learning_continuation,
            "prefixes": list(self.prefixes),
            "group": self.group,
        }


SampleLike = Union[LearningSample, Sequence[Any]]


def as_samples(samples: Iterable[SampleLike]) -> tuple[LearningSample, ...]:
    """Validate a collection of samples (or ``(name, text, keyword, prefixes[, group])`` tuples).

    Raises:
        ValueError: no samples, a malformed tuple, or duplicate names.
    """
    if isinstance(samples, LearningSample):
        samples = [samples]
    out: list[LearningSample] = []
    for i, s in enumerate(samples):
        if isinstance(s, LearningSample):
            out.append(s)
        elif isinstance(s, (tuple, list)) and len(s) in (4, 5):
            out.append(LearningSample(*s))
        else:
            raise ValueError(
                f"Learning sample #{i}: expected a LearningSample or a (name, text, keyword, prefixes[, group])"
                f" tuple, got {s!r}."
            )
    return tuple(named_items(out, "learning sample"))


@dataclass(frozen=True)
class TokenizedSamples:
    """Samples tokenized for scoring and exposure counting.

    Attributes:
        items: scoring items; for sample ``s`` item ``learn_index[s]`` is (learning context,
            keyword) and items ``prefix_index[prefix_owner == s]`` are (prefix_j, keyword).
        learn_index: ``[n_samples]`` indices into ``items``.
        prefix_index: ``[n_prefixes]`` indices into ``items`` (all samples' prefixes, in order).
        prefix_owner: ``[n_prefixes]`` the sample each prefix belongs to.
        patterns: per sample, the token ids whose occurrence in a training batch counts as one
            exposure (the learning context, or its last ``match_context_tokens`` tokens, followed
            by the keyword tokens; never the BOS token).
    """

    items: tuple[TokenizedItem, ...]
    learn_index: tuple[int, ...]
    prefix_index: tuple[int, ...]
    prefix_owner: tuple[int, ...]
    patterns: tuple[tuple[int, ...], ...]


def tokenize_samples(
    samples: Sequence[LearningSample],
    encode: Optional[Encoder],
    *,
    separator: str = " ",
    bos_id: Optional[int] = None,
    match_context_tokens: Optional[int] = None,
) -> TokenizedSamples:
    """Tokenize every sample's learning pair and prefix pairs under the library's score convention
    (:mod:`probes.core.tokenize`).

    The learning pair scores the text's own whitespace and keyword (:attr:`LearningSample.
    learning_continuation`) after the learning context; each prefix scores ``separator`` +
    keyword after the prefix as written.

    Raises:
        ValueError: no tokenizer, a keyword that tokenizes to nothing, or a bad
            ``match_context_tokens``.
    """
    if encode is None:
        raise ValueError(
            "Learning samples are text: pass `tokenizer=` (a callable str -> list[int] or a HF tokenizer)."
        )
    if match_context_tokens is not None and (
        not isinstance(match_context_tokens, int) or isinstance(match_context_tokens, bool) or match_context_tokens < 0
    ):
        raise ValueError(
            f"Expected `match_context_tokens` to be None (the whole learning context) or an int >= 0,"
            f" got {match_context_tokens!r}."
        )
    named: list[tuple[str, ContinuationTokens]] = []
    learn_index: list[int] = []
    prefix_index: list[int] = []
    prefix_owner: list[int] = []
    affixes = special_affixes(encode)

    def add(name: str, context: str, continuation: str) -> None:
        try:
            tokens = tokenize_continuation(encode, context, continuation, affixes=affixes, bos_id=bos_id)
        except ValueError as err:
            raise ValueError(f"Learning sample {name.rsplit('/', 1)[0]!r} ({name}): {err}") from None
        named.append((name, tokens))

    for s_idx, s in enumerate(samples):
        learn_index.append(len(named))
        add(f"{s.name}/learn", s.learning_context, s.learning_continuation)
        for j, prefix in enumerate(s.prefixes):
            prefix_index.append(len(named))
            prefix_owner.append(s_idx)
            add(f"{s.name}/prefix{j}", prefix, separator + s.keyword)
    for message in boundary_warnings(named, getattr(encode, "pieces", None)):
        warnings.warn(message, stacklevel=2)
    items = tuple(TokenizedItem(name, t.context, t.continuation) for name, t in named)
    skip = len(affixes.head) + (1 if bos_id is not None and (not affixes.head or affixes.head[0] != bos_id) else 0)
    patterns = []
    for li in learn_index:
        ctx = items[li].context[skip:]
        if match_context_tokens is not None:
            ctx = ctx[len(ctx) - min(match_context_tokens, len(ctx)) :]
        patterns.append(tuple(ctx) + tuple(items[li].target))
    return TokenizedSamples(items, tuple(learn_index), tuple(prefix_index), tuple(prefix_owner), tuple(patterns))
