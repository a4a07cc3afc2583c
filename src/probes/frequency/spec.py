"""What the frequency probe measures per item, tokenized once.

**Items.** Every item is a :class:`FrequencyItem`: a name, a type, a *context*, a *separator* and
a *keyword* (the word to count), so that ``context + separator + keyword`` is the item's text.
Four item types are accepted directly, mixed in one probe (:func:`as_items`):

* **keyword pairs** (``"keyword pair"``): :class:`~probes.keyword.spec.ProbePair`, a
  :class:`~probes.keyword.spec.ProbeSet` (its separator) or ``(name, context, keyword[, group])``
  tuples (separator ``" "``). Named as given.
* **learning samples** (``"learning sample"``): :class:`~probes.priming.spec.LearningSample`, or a
  :class:`~probes.priming.probe.PrimingProbe` (its samples). One item per sample: the learning
  context, the whitespace the text has before the keyword, and the keyword, so the item's text is
  the sample's fact (``"the colour of sand is vermilion"``). The priming prefixes are not items:
  their keyword is the sample's, so its count would repeat; the PrimingProbe reads them. Named
  ``sample:<name>``; group: the sample's group.
* **format prompts** (``"format prompt"``): :class:`FormatPrompts` (prompts and a
  :class:`~probes.formats.spec.FormatSpec`, a :class:`~probes.formats.spec.LabelSpace` or a list of
  formats), or a :class:`~probes.formats.probe.FormatProbe` with ``prompts``. A format has no
  single keyword, so the rule is **one item per (prompt, format, marker)**: a format's *markers*
  are its continuation prefixes (``"def"``, ``"<llm-code>"``, a LabelSpace's labels), or its
  ``contains`` substring when it declares no prefix; a format with neither (a bare ``regex`` or
  ``fn`` test) is refused with a message, never dropped. The keyword is the marker, counted
  wherever it occurs in the stream; the context is the prompt, and the marker follows it directly
  as the FormatProbe's scored mode reads it (separator ``""``, or the marker's own leading
  whitespace, e.g. a LabelSpace's ``" positive"``), so ``logp`` is ``log P(marker | prompt)``. Named
  ``format:p<prompt index>/<format>``, with ``/<marker index>`` added when a format has several
  markers; group: the format's name.
* **benchmark questions** (``"benchmark question"``): a named
  :class:`~probes.choice.spec.Question`, a :class:`~probes.choice.spec.Benchmark`, a
  :class:`~probes.choice.spec.BenchmarkSuite` or a :class:`~probes.choice.probe.BenchmarkProbe`
  (its suite). The keyword is the **correct option's text**; the context is the benchmark's
  instruction followed by the prompt and the separator the benchmark's (``" "`` for a bare
  question), i.e. the cloze form of the question whatever the benchmark's ``style`` (the letter of
  a ``"letters"`` benchmark is not a concept to count). Named ``question:<benchmark>/<question>``
  (``question:<question>`` for a bare question); group: the question's concept, else the
  benchmark's category.

Leading whitespace of a marker or an answer moves to the separator, so the keyword is the bare
word. Items are text only (forms need the tokenizer); names must be unique across all items.

**Token views.** For each item:

* the keyword's *forms*: the keyword tokenized alone and with a leading space (and without it, when
  the keyword starts with one), distinct ones only, special tokens stripped;
* the n-gram codes of its context (for context n-gram counts) and of its full text
  ``context + separator + keyword`` (for lexical similarity), see :mod:`probes.frequency.measures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from probes.choice.spec import Benchmark, BenchmarkSuite, Question
from probes.core.checks import named_items
from probes.core.model_io import Encoder
from probes.core.plan import TokenizedItem
from probes.core.tokenize import special_affixes
from probes.formats.spec import Format, FormatSpec, LabelSpace, as_format_spec
from probes.keyword.spec import ProbePair, ProbeSet, tokenize_pairs
from probes.priming.spec import LearningSample

__all__ = [
    "ITEM_TYPES",
    "FormatPrompts",
    "FrequencyItem",
    "ItemTokens",
    "as_items",
    "as_probe_set",
    "codes_of",
    "item_requests",
    "tokenize_items",
]

#: The item types, as ``describe()["item_types"]`` and each item's ``"type"`` name them.
ITEM_TYPES = ("keyword pair", "learning sample", "format prompt", "benchmark question")


@dataclass(frozen=True)
class FrequencyItem:
    """One probe item of the frequency probe: the word to count and the text it belongs to.

    Args:
        name: unique among the probe's items (a record column).
        type: one of :data:`ITEM_TYPES`.
        context: the text the keyword follows (its n-grams are counted; P(keyword | context) is read).
        keyword: the word counted in the stream.
        separator: what comes between the context and the keyword (scored with the keyword).
        group: a label for aggregation.
        origin: where the item comes from (sample, prompt index and format, benchmark and
            question...), shown by ``describe()``.

    Raises:
        ValueError: an empty name, context or keyword, non-text fields or an unknown type.
    """

    name: str
    type: str
    context: str
    keyword: str
    separator: str = " "
    group: str = ""
    origin: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Expected a frequency item `name` to be a non-empty string, got {self.name!r}.")
        if self.type not in ITEM_TYPES:
            raise ValueError(f"Item {self.name!r}: expected `type` in {ITEM_TYPES}, got {self.type!r}.")
        for what in ("context", "keyword", "separator", "group"):
            if not isinstance(getattr(self, what), str):
                raise ValueError(
                    f"Item {self.name!r}: the frequency probe needs text items, got {what}"
                    f" {getattr(self, what)!r} (it tokenizes the keyword with and without a leading space)."
                )
        if not self.context or not self.keyword.strip():
            raise ValueError(
                f"Item {self.name!r}: expected a non-empty context and keyword, got {self.context!r} and"
                f" {self.keyword!r}."
            )

    @property
    def text(self) -> str:
        """``context + separator + keyword``: the item's text for lexical and representational similarity."""
        return self.context + self.separator + self.keyword

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "context": self.context,
            "separator": self.separator,
            "keyword": self.keyword,
            "group": self.group,
            "origin": dict(self.origin),
        }


@dataclass(frozen=True)
class FormatPrompts:
    """Format prompts: fixed prompts and the formats whose markers follow them (see the module
    docstring for the rule: one item per prompt, format and marker).

    Args:
        prompts: non-empty prompt strings (a single string is one prompt).
        spec: a :class:`~probes.formats.spec.FormatSpec`, a :class:`~probes.formats.spec.LabelSpace`
            or a list of :class:`~probes.formats.spec.Format`.

    Raises:
        ValueError: no prompts, an empty or non-string prompt, or a bad spec.

    Example::

        FormatPrompts(["Solve: 2 + 3 =", "Solve: 7 - 4 ="], ECHO_CHAMBER_MATH)
    """

    prompts: tuple[str, ...]
    spec: FormatSpec

    def __init__(self, prompts: Union[str, Sequence[str]], spec: Union[FormatSpec, LabelSpace, Sequence[Format]]):
        given = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        if not given:
            raise ValueError("FormatPrompts: expected at least one prompt, got none.")
        for i, p in enumerate(given):
            if not isinstance(p, str) or not p:
                raise ValueError(f"FormatPrompts: prompt #{i} must be a non-empty string, got {p!r}.")
        object.__setattr__(self, "prompts", given)
        object.__setattr__(self, "spec", as_format_spec(spec))


def _split_space(sep: str, word: str) -> tuple[str, str]:
    """Move ``word``'s leading whitespace to the end of ``sep``."""
    bare = word.lstrip()
    return sep + word[: len(word) - len(bare)], bare


def _markers(fmt: Format) -> list[tuple[str, str]]:
    if fmt.prefixes:
        return [(p, "prefix") for p in fmt.prefixes]
    if fmt.contains is not None and fmt.contains.strip():
        return [(fmt.contains, "contains")]
    raise ValueError(
        f"Format {fmt.name!r} has no marker to count: no continuation `prefixes` and no `contains` substring"
        f" (a bare {fmt.kind} test). Give it prefixes=('...',), the text an answer in this format starts with."
    )


def _format_items(prompts: Sequence[str], spec: FormatSpec) -> list[FrequencyItem]:
    out = []
    for pi, prompt in enumerate(prompts):
        for fmt in spec.formats:
            markers = _markers(fmt)
            for j, (marker, how) in enumerate(markers):
                sep, keyword = _split_space("", marker)
                suffix = f"/{j}" if len(markers) > 1 else ""
                out.append(FrequencyItem(
                    f"format:p{pi}/{fmt.name}{suffix}", "format prompt", prompt, keyword, sep, fmt.name,
                    {"prompt": pi, "format": fmt.name, "marker": marker, "marker_index": j, "marker_kind": how},
                ))
    return out


def _question_item(q: Question, bench: Union[Benchmark, None]) -> FrequencyItem:
    label = f"{bench.name}/{q.name}" if bench is not None else q.name
    if not q.is_text:
        raise ValueError(
            f"Question {label!r} is given as token ids; the frequency probe needs text items (it tokenizes"
            " the keyword with and without a leading space)."
        )
    if not q.name:
        raise ValueError(
            f"Question with prompt {q.prompt!r} has no name; name it (Question(..., name='q0')) or pass its Benchmark."
        )
    instruction = str(bench.instruction) if bench is not None else ""
    sep, keyword = _split_space(bench.separator if bench is not None else " ", str(q.options[q.answer]))
    origin: dict[str, Any] = {"question": q.name, "answer": q.answer, "n_options": q.n_options, "concept": q.concept}
    if bench is not None:
        origin = {"benchmark": bench.name, **origin, "style": bench.style}
    group = q.concept or (bench.category if bench is not None else "")
    return FrequencyItem(f"question:{label}", "benchmark question", instruction + str(q.prompt), keyword, sep,
                         group, origin)


def _sample_item(s: LearningSample) -> FrequencyItem:
    sep = s.learning_continuation[: len(s.learning_continuation) - len(s.keyword)]
    return FrequencyItem(f"sample:{s.name}", "learning sample", s.learning_context, s.keyword, sep, s.group,
                         {"sample": s.name, "text": s.text})


def _pair_item(pair: ProbePair, separator: str) -> FrequencyItem:
    if not pair.is_text:
        raise ValueError(
            f"Item {pair.name!r} is given as token ids; the frequency probe needs text items (it tokenizes"
            " the keyword with and without a leading space)."
        )
    return FrequencyItem(pair.name, "keyword pair", str(pair.context), str(pair.keyword), separator, pair.group)


ItemLike = Any  # any of the accepted objects (see as_items)


def _convert(obj: ItemLike, separator: str, where: str) -> list[FrequencyItem]:
    from probes.choice.probe import BenchmarkProbe
    from probes.formats.probe import FormatProbe
    from probes.priming.probe import PrimingProbe

    if isinstance(obj, FrequencyItem):
        return [obj]
    if isinstance(obj, ProbePair):
        return [_pair_item(obj, separator)]
    if isinstance(obj, ProbeSet):
        return [_pair_item(p, obj.separator) for p in obj]
    if isinstance(obj, LearningSample):
        return [_sample_item(obj)]
    if isinstance(obj, PrimingProbe):
        return [_sample_item(s) for s in obj.samples]
    if isinstance(obj, FormatPrompts):
        return _format_items(obj.prompts, obj.spec)
    if isinstance(obj, FormatProbe):
        if not obj.prompts:
            raise ValueError(
                f"{where}: the FormatProbe has no prompts (mode {obj.mode!r}); format prompt items need its"
                " prompts. Pass FormatPrompts(prompts, spec) instead."
            )
        return _format_items(obj.prompts, obj.spec)
    if isinstance(obj, (FormatSpec, LabelSpace)):
        raise ValueError(
            f"{where}: a {type(obj).__name__} has no prompts; pass FormatPrompts(prompts, spec) (or a FormatProbe"
            " with prompts) so each (prompt, format, marker) becomes an item."
        )
    if isinstance(obj, Question):
        return [_question_item(obj, None)]
    if isinstance(obj, Benchmark):
        return [_question_item(q, obj) for q in obj.questions]
    if isinstance(obj, BenchmarkSuite):
        return [_question_item(q, b) for b in obj for q in b.questions]
    if isinstance(obj, BenchmarkProbe):
        return [_question_item(q, b) for b in obj.suite for q in b.questions]
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], str):
        if len(obj) not in (3, 4):
            raise ValueError(f"{where}: expected a (name, context, keyword[, group]) tuple, got {obj!r}.")
        return [_pair_item(ProbePair(*obj), separator)]
    raise ValueError(
        f"{where}: expected a keyword pair (ProbePair, ProbeSet or (name, context, keyword[, group]) tuple), a"
        " LearningSample or PrimingProbe, FormatPrompts or a FormatProbe with prompts, or a Question, Benchmark,"
        f" BenchmarkSuite or BenchmarkProbe; got {type(obj).__name__} {obj!r}."
    )


_CONTAINERS = (ProbeSet, FormatPrompts, Benchmark, BenchmarkSuite)


def as_items(items: Union[ItemLike, Iterable[ItemLike]], separator: str = " ") -> tuple[FrequencyItem, ...]:
    """Every item as a :class:`FrequencyItem`, in the order given (see the module docstring for
    each type's keyword, context, separator and name).

    Args:
        items: one accepted object (a probe, a spec, an item) or an iterable of them, mixed.
        separator: between context and keyword of keyword pairs given as tuples or ProbePairs
            (a ProbeSet brings its own).

    Raises:
        ValueError: no items, an object of no accepted type, a token-id item, a format without a
            marker, or two items with the same name.
    """
    single = (isinstance(items, _CONTAINERS) or not isinstance(items, Iterable)
              or (isinstance(items, (tuple, list)) and bool(items) and isinstance(items[0], str)))
    given = [items] if single else list(items)
    out: list[FrequencyItem] = []
    for i, obj in enumerate(given):
        out.extend(_convert(obj, separator, f"Item #{i}"))
    return tuple(named_items(out, "frequency item"))


def as_probe_set(items: ProbeSet | Iterable[ProbePair | Sequence[object]], separator: str = " ") -> ProbeSet:
    """The items as a :class:`~probes.keyword.spec.ProbeSet` (pairs or ``(name, context, keyword)``
    tuples). Only text pairs are accepted (forms need the tokenizer).

    Raises:
        ValueError: no items, a malformed item, or a pair given as token ids.
    """
    probe_set = items if isinstance(items, ProbeSet) else ProbeSet(items, separator=separator)
    for pair in probe_set:
        _pair_item(pair, probe_set.separator)
    return probe_set


def item_requests(items: Sequence[FrequencyItem], encode: Encoder, *, bos_id: Union[int, None]) -> list[TokenizedItem]:
    """The scoring requests: ``keyword`` after ``context``, with each item's own ``separator`` scored
    with the keyword (the library's score convention, :func:`~probes.keyword.spec.tokenize_pairs`)."""
    pairs = ProbeSet([ProbePair(it.name, it.context, it.separator + it.keyword) for it in items], separator="")
    return tokenize_pairs(pairs, encode, bos_id=bos_id)


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


def tokenize_items(items: Union[ProbeSet, Sequence[FrequencyItem]], encode: Encoder, *, n: int) -> list[ItemTokens]:
    """Tokenize every item (see the module docstring).

    Raises:
        ValueError: a keyword that tokenizes to nothing.
    """
    its = as_items(items) if isinstance(items, ProbeSet) else items
    affixes = special_affixes(encode)
    out = []
    for it in its:
        bare = it.keyword.lstrip(" ")
        forms: dict[tuple[int, ...], None] = {}
        for text in (bare, " " + bare):
            ids = tuple(affixes.strip(encode(text)))
            if ids:
                forms[ids] = None
        if not forms:
            raise ValueError(f"Item {it.name!r}: keyword {it.keyword!r} tokenizes to nothing.")
        context_ids = tuple(affixes.strip(encode(it.context)))
        text_ids = tuple(affixes.strip(encode(it.text)))
        out.append(ItemTokens(it.name, tuple(forms), text_ids, codes_of(context_ids, n), codes_of(text_ids, n)))
    return out
