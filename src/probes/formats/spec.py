"""Output-format specifications: named formats, checked in precedence order, with an "other" bucket.

A :class:`Format` recognises one output format by exactly one test:

* ``regex``: :func:`re.search` anywhere in the text (anchor with ``^`` / ``\\A`` to test the start);
* ``contains``: a plain substring test;
* ``fn``: any callable ``str -> bool``.

A format may also declare continuation ``prefixes`` (for example ``"def"`` or ``"Let's"``): the
text a model's output starts with when it answers in that format. They are what the scored mode of
:class:`~probes.formats.probe.FormatProbe` reads, without sampling.

A :class:`FormatSpec` is an ordered tuple of formats: :meth:`FormatSpec.classify` returns the index
of the first format that matches, or ``len(spec)`` (the "other" bucket) when none does.

A :class:`LabelSpace` is the classification-style variant: a declared set of answers (labels). Its
scored distribution is the probability of each label versus everything else ("output-space
conformity"), and its entropy is taken over the label set.

The paper's math formats
------------------------

The paper's format labels (Zhao et al. 2025, "Echo Chamber", arXiv 2504.07912), as its text
describes them, are substring tests checked in order: text containing ``<llm-code>`` is
OpenMathInstruct-1 style code; otherwise text with a function definition (tested as the
substring ``def``) is TinyGSM style code; otherwise it is natural language (OpenMathInstruct-2
style). ``ECHO_CHAMBER_MATH`` reproduces that loose test, and
``ECHO_CHAMBER_MATH_STRICT`` is a stricter regex version. They disagree on:

* ``def`` inside ordinary words: "Let's define x", "by default", "undefined", "the deficit" are
  TinyGSM code for the substring test and natural language for the regex, which needs ``def`` at
  the start of a line followed by a name and ``(``;
* an opening ``<llm-code>`` tag without its closing tag (a truncated or unfinished generation):
  OpenMathInstruct-1 code for the substring test, not for the regex, which needs the full block;
* a code block quoted inside prose: both tests look anywhere in the text, so a natural-language
  answer that quotes ``def f(x):`` on its own line is code for both.

If bit-exact comparability with the paper's figures matters, check its released evaluation code for
the exact strings. Empty or whitespace-only output is "other" in both (natural language needs a non-space character).
The scored-mode prefixes (``<llm-code>``, ``def``, ``Let's``) describe how an answer *starts*; they
are a sampling-free proxy, exact only when each format is recognised by its first tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

__all__ = [
    "ECHO_CHAMBER_MATH",
    "ECHO_CHAMBER_MATH_STRICT",
    "Format",
    "FormatSpec",
    "LabelSpace",
    "as_format_spec",
]

Pattern = Union[str, "re.Pattern[str]"]


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ValueError(f"Expected {what} to be a non-empty string without '/', got {name!r}.")
    return name


def _check_prefixes(name: str, prefixes: object) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    if not isinstance(prefixes, (tuple, list)):
        raise ValueError(
            f"Format {name!r}: expected `prefixes` to be a string or a sequence of strings, got {prefixes!r}."
        )
    out: list[str] = []
    for p in prefixes:
        if not isinstance(p, str) or p == "":
            raise ValueError(
                f"Format {name!r}: every continuation prefix must be a non-empty string, got {p!r}."
                " Give the text an answer in this format starts with, e.g. 'def'."
            )
        if p in out:
            raise ValueError(f"Format {name!r}: duplicate continuation prefix {p!r}.")
        out.append(p)
    return tuple(out)


@dataclass(frozen=True)
class Format:
    """One named output format, recognised by exactly one of ``regex``, ``contains`` or ``fn``.

    Args:
        name: the format's name (unique within a :class:`FormatSpec`; not ``"other"``).
        regex: a pattern searched anywhere in the text (:func:`re.search`); a string is compiled
            with ``flags``.
        contains: a substring that must occur in the text.
        fn: a callable ``text -> bool``.
        prefixes: continuation prefixes for the scored mode: the text an output in this format
            starts with, right after the prompt. No prefix of a format may be a prefix of another
            one in the same spec (the probability mass would be counted twice).
        flags: :mod:`re` flags for a string ``regex``.
        description: free text shown by ``describe()``.

    Raises:
        ValueError: a bad name, not exactly one test, an invalid regex, an empty substring, or a
            bad prefix.

    Example::

        Format("tinygsm", regex=r"^\\s*def\\s+\\w+\\s*\\(", flags=re.MULTILINE, prefixes=("def",))
    """

    name: str
    regex: Optional[Pattern] = None
    contains: Optional[str] = None
    fn: Optional[Callable[[str], bool]] = None
    prefixes: tuple[str, ...] = ()
    flags: int = 0
    description: str = ""
    _pattern: Optional[re.Pattern[str]] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = _check_name(self.name, "a format `name`")
        given = [k for k, v in (("regex", self.regex), ("contains", self.contains), ("fn", self.fn)) if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"Format {name!r}: give exactly one of `regex`, `contains` or `fn`, got"
                f" {given or 'none'}. E.g. Format({name!r}, contains='<llm-code>')."
            )
        if self.regex is not None:
            if isinstance(self.regex, re.Pattern):
                pattern = self.regex
            elif isinstance(self.regex, str) and self.regex:
                try:
                    pattern = re.compile(self.regex, self.flags)
                except re.error as err:
                    raise ValueError(f"Format {name!r}: invalid regex {self.regex!r}: {err}.") from err
            else:
                raise ValueError(
                    f"Format {name!r}: expected `regex` to be a non-empty string or compiled pattern,"
                    f" got {self.regex!r}."
                )
            object.__setattr__(self, "_pattern", pattern)
        if self.contains is not None and (not isinstance(self.contains, str) or self.contains == ""):
            raise ValueError(f"Format {name!r}: expected `contains` to be a non-empty string, got {self.contains!r}.")
        if self.fn is not None and not callable(self.fn):
            raise ValueError(f"Format {name!r}: expected `fn` to be a callable str -> bool, got {self.fn!r}.")
        object.__setattr__(self, "prefixes", _check_prefixes(name, self.prefixes))
        if not isinstance(self.description, str):
            raise ValueError(f"Format {name!r}: expected `description` to be a string, got {self.description!r}.")

    @property
    def kind(self) -> str:
        """``"regex"``, ``"contains"`` or ``"fn"``."""
        return "regex" if self.regex is not None else "contains" if self.contains is not None else "fn"

    def matches(self, text: str) -> bool:
        """Whether ``text`` is in this format.

        Raises:
            TypeError: ``fn`` returned something other than a bool.
        """
        if self._pattern is not None:
            return self._pattern.search(text) is not None
        if self.contains is not None:
            return self.contains in text
        assert self.fn is not None
        result = self.fn(text)
        if not isinstance(result, bool):
            if type(result).__name__ == "bool_":  # numpy.bool_
                return bool(result)
            raise TypeError(
                f"Format {self.name!r}: classifier {self.fn!r} returned {type(result).__name__} {result!r}"
                " for a text; it must return True or False."
            )
        return result

    def to_json(self) -> dict[str, Any]:
        test: Any
        if self._pattern is not None:
            test = {"regex": self._pattern.pattern, "flags": int(self._pattern.flags)}
        elif self.contains is not None:
            test = {"contains": self.contains}
        else:
            test = {"fn": getattr(self.fn, "__qualname__", repr(self.fn))}
        return {
            "name": self.name,
            "kind": self.kind,
            **test,
            "prefixes": list(self.prefixes),
            "description": self.description,
        }


class FormatSpec:
    """An ordered set of :class:`Format` objects; the first match wins, unmatched text is "other".

    Args:
        formats: the formats in precedence order.
        other: name of the bucket for text no format matches (default ``"other"``).

    Raises:
        ValueError: no formats, a non-Format entry, duplicate names, a format named like the
            ``other`` bucket, or continuation prefixes that overlap (one a prefix of another).

    Example::

        spec = FormatSpec([Format("code", contains="<llm-code>"), Format("text", regex=r"\\S")])
        spec.classify("<llm-code>print(1)</llm-code>")  # 0
        spec.classify("")  # 2 == len(spec): "other"
    """

    def __init__(self, formats: Iterable[Format], *, other: str = "other") -> None:
        fmts = tuple(formats)
        if not fmts:
            raise ValueError(
                "Expected at least one format, got none. E.g. FormatSpec([Format('code', contains='def')])."
            )
        for i, f in enumerate(fmts):
            if not isinstance(f, Format):
                raise ValueError(f"Format #{i}: expected a probes.formats.Format, got {type(f).__name__} {f!r}.")
        other = _check_name(other, "`other`")
        seen: set[str] = set()
        for f in fmts:
            if f.name in seen:
                raise ValueError(f"Duplicate format name {f.name!r}: names must be unique.")
            if f.name == other:
                raise ValueError(
                    f"Format name {f.name!r} is reserved for unmatched text; rename the format or pass other='...'."
                )
            seen.add(f.name)
        owners: list[tuple[str, str]] = [(p, f.name) for f in fmts for p in f.prefixes]
        for i, (p, fa) in enumerate(owners):
            for q, fb in owners[i + 1 :]:
                if p.startswith(q) or q.startswith(p):
                    raise ValueError(
                        f"Continuation prefixes {p!r} (format {fa!r}) and {q!r} (format {fb!r}) overlap: one"
                        " starts with the other, so its probability would be counted twice. Keep only the shorter one."
                    )
        self.formats: tuple[Format, ...] = fmts
        self.other = other

    def __len__(self) -> int:
        return len(self.formats)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.formats)

    def __repr__(self) -> str:
        return f"FormatSpec({[f.name for f in self.formats]!r}, other={self.other!r})"

    @property
    def names(self) -> list[str]:
        """Format names in precedence order, followed by the ``other`` bucket."""
        return [f.name for f in self.formats] + [self.other]

    @property
    def other_index(self) -> int:
        return len(self.formats)

    @property
    def has_prefixes(self) -> bool:
        """Whether every format declares at least one continuation prefix (needed for scored mode)."""
        return all(f.prefixes for f in self.formats)

    def require_prefixes(self) -> None:
        """Raise when some format declares no continuation prefix (the scored mode needs them all).

        Raises:
            ValueError: naming the formats without prefixes.
        """
        missing = [f.name for f in self.formats if not f.prefixes]
        if missing:
            raise ValueError(
                f"Scored mode needs continuation prefixes for every format; {missing} declare none."
                " Pass e.g. Format('tinygsm', ..., prefixes=('def',))."
            )

    def classify(self, text: str) -> int:
        """Index of the first matching format, or :attr:`other_index` when none matches.

        Raises:
            TypeError: ``text`` is not a string (decode token ids first).
        """
        if not isinstance(text, str):
            raise TypeError(
                f"Expected a completion string, got {type(text).__name__} {text!r}; decode token ids with"
                " the tokenizer first (FormatProbe does this when given `tokenizer=`)."
            )
        for i, f in enumerate(self.formats):
            if f.matches(text):
                return i
        return self.other_index

    def classify_many(self, texts: Sequence[str]) -> list[int]:
        """:meth:`classify` for each text."""
        return [self.classify(t) for t in texts]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "formats", "formats": [f.to_json() for f in self.formats], "other": self.other}


class LabelSpace:
    """A declared answer set for classification-style outputs ("positive", "negative", ...).

    In scored mode the probe reads P(label | prompt) for every label (the chained probability of
    all its tokens after ``separator``); the distribution is those probabilities plus the rest of
    the mass ("everything else", the ``other`` bucket), so ``1 - unclassified`` is the
    output-space conformity and the entropy is taken over the label set. For rollouts and samples
    a completion counts as a label when, stripped of surrounding whitespace, it equals the label
    or starts with it followed by a non-word character.

    Args:
        labels: the answers, in order; unique non-empty strings, none a prefix of another.
        separator: text inserted between the prompt and the label when scoring (default one
            space); use ``""`` when prompts already end with it.
        other: name of the "everything else" bucket.
        case_sensitive: whether rollout matching is case sensitive.

    Raises:
        ValueError: no labels, empty or duplicate labels, or a label that is a prefix of another.

    Example::

        LabelSpace(["positive", "negative"])
    """

    def __init__(
        self, labels: Iterable[str], *, separator: str = " ", other: str = "other", case_sensitive: bool = True
    ) -> None:
        labs = tuple(labels)
        if not labs:
            raise ValueError("Expected at least one label, got none. E.g. LabelSpace(['positive', 'negative']).")
        for lab in labs:
            if not isinstance(lab, str) or not lab.strip():
                raise ValueError(f"Expected every label to be a non-empty string, got {lab!r}.")
        if not isinstance(separator, str):
            raise ValueError(f"Expected `separator` to be a string, got {separator!r}.")
        flags = 0 if case_sensitive else re.IGNORECASE
        formats = [
            Format(
                lab, regex=re.compile(r"\A\s*" + re.escape(lab.strip()) + r"(?!\w)", flags), prefixes=(separator + lab,)
            )
            for lab in labs
        ]
        self.spec = FormatSpec(formats, other=other)  # validates duplicates and overlapping labels
        self.labels = labs
        self.separator = separator
        self.case_sensitive = case_sensitive

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"LabelSpace({list(self.labels)!r})"

    @property
    def names(self) -> list[str]:
        return self.spec.names

    def classify(self, text: str) -> int:
        """Index of the label ``text`` answers with, or ``len(labels)`` for anything else."""
        return self.spec.classify(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "labels",
            "labels": list(self.labels),
            "separator": self.separator,
            "other": self.spec.other,
            "case_sensitive": self.case_sensitive,
        }


def as_format_spec(spec: Union[FormatSpec, LabelSpace, Sequence[Format]]) -> FormatSpec:
    """The :class:`FormatSpec` behind ``spec`` (a LabelSpace's label formats, or a list of formats)."""
    if isinstance(spec, FormatSpec):
        return spec
    if isinstance(spec, LabelSpace):
        return spec.spec
    if isinstance(spec, (list, tuple)):
        return FormatSpec(spec)
    raise ValueError(
        f"Expected a FormatSpec, a LabelSpace or a list of Format objects, got {type(spec).__name__} {spec!r}."
    )


# --- The paper's math-answer formats (Zhao et al. 2025, arXiv 2504.07912) -----------------------

ECHO_CHAMBER_MATH = FormatSpec(
    [
        Format(
            "openmathinstruct1_code",
            contains="<llm-code>",
            prefixes=("<llm-code>",),
            description="OpenMathInstruct-1 style: code between <llm-code> tags (substring test).",
        ),
        Format(
            "tinygsm_code",
            contains="def",
            prefixes=("def",),
            description="TinyGSM style: a Python function (the paper's loose substring test 'def').",
        ),
        Format(
            "natural_language",
            regex=r"\S",
            prefixes=("Let's",),
            description="OpenMathInstruct-2 style natural-language solution: any other non-empty text.",
        ),
    ],
    other="other",
)

ECHO_CHAMBER_MATH_STRICT = FormatSpec(
    [
        Format(
            "openmathinstruct1_code",
            regex=r"<llm-code>.*?</llm-code>",
            flags=re.DOTALL,
            prefixes=("<llm-code>",),
            description="OpenMathInstruct-1 style: a complete <llm-code>...</llm-code> block.",
        ),
        Format(
            "tinygsm_code",
            regex=r"^[ \t]*def[ \t]+[A-Za-z_]\w*[ \t]*\(",
            flags=re.MULTILINE,
            prefixes=("def",),
            description="TinyGSM style: a line that starts a Python function definition.",
        ),
        Format(
            "natural_language",
            regex=r"\S",
            prefixes=("Let's",),
            description="OpenMathInstruct-2 style natural-language solution: any other non-empty text.",
        ),
    ],
    other="other",
)
