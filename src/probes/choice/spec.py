"""Small multiple-choice and cloze benchmarks: frozen, validated-on-creation specifications.

A :class:`Question` is a prompt with two or more options, one of them correct. A
:class:`Benchmark` is a named list of questions with a capability ``category``, scored in one of
two styles:

* ``"cloze"`` (default): each option is scored as the continuation of the prompt
  (``"the colour of sand is" -> " yellow" | " blue" | ...``);
* ``"letters"``: the options are listed under the prompt as ``A. ...``, ``B. ...`` followed by
  ``"Answer:"``, and the option letters (``" A"``, ``" B"``, ...) are scored.

A benchmark may carry an ``instruction``: text (or token ids) put in front of every question's
prompt, exactly as written (``instruction + prompt``; include your own separator, e.g. a newline).
:class:`~probes.choice.probe.BenchmarkProbe` can score every question again with the
instruction replaced (``ablations=``, e.g. empty or misleading), in the same batched pass.

A :class:`BenchmarkSuite` is an ordered set of uniquely named benchmarks. No Lightning import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from probes.core.checks import TextOrIds, named_items, text_or_ids

__all__ = ["Benchmark", "BenchmarkSuite", "Question", "as_suite", "check_instruction"]

Style = Literal["cloze", "letters"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"




def check_instruction(value: object, *, text: bool, where: str) -> TextOrIds:
    """Validate an instruction: a string (may be empty) for text questions, or a sequence of token
    ids (may be empty; ``""`` also means none) for token-id questions."""
    if text:
        if not isinstance(value, str):
            raise ValueError(
                f'{where}: expected the instruction to be a string ("" for none) for text questions, got'
                f" {type(value).__name__} {value!r}."
            )
        return value
    if isinstance(value, str):
        if value:
            raise ValueError(
                f"{where}: the questions are token ids, so the instruction must be token ids too, got text {value!r}."
            )
        return ()
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return tuple(int(v) for v in value)
    raise ValueError(f"{where}: expected the instruction to be a sequence of token ids >= 0, got {value!r}.")


def join_instruction(instruction: TextOrIds, prompt: TextOrIds) -> TextOrIds:
    """``instruction + prompt`` (text or token ids), exactly as written."""
    if isinstance(prompt, str):
        return f"{instruction}{prompt}"
    return tuple(instruction) + tuple(prompt)


@dataclass(frozen=True)
class Question:
    """One multiple-choice (or cloze) question.

    Args:
        prompt: the text (or token ids) the options follow.
        options: two or more distinct options (texts, or token-id sequences when ``prompt`` is ids).
        answer: 0-based index of the correct option.
        name: identifier, unique within its benchmark; a :class:`Benchmark` names unnamed
            questions ``"q0"``, ``"q1"``, ...
        concept: optional label of what the question is about (e.g. ``"sand"``), used to join
            benchmark results with exposure counts in frequency analysis.

    Raises:
        ValueError: fewer than two options, duplicate options, an answer index out of range, an
            empty prompt or option, or a mix of text and token ids.

    Example::

        Question("the colour of sand is", ["yellow", "blue", "green"], answer=0, concept="sand")
    """

    prompt: TextOrIds
    options: tuple[TextOrIds, ...]
    answer: int
    name: str = ""
    concept: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"Expected question `name` to be a string, got {self.name!r}.")
        where = f"Question {self.name!r}" if self.name else f"Question with prompt {self.prompt!r}"
        prompt = text_or_ids(self.prompt, "prompt", where, nonnegative=True)
        if isinstance(self.options, (str, bytes)) or not isinstance(self.options, Iterable):
            raise ValueError(f"{where}: expected `options` to be a list of at least 2 options, got {self.options!r}.")
        options = tuple(text_or_ids(o, f"options[{i}]", where, nonnegative=True) for i, o in enumerate(self.options))
        if len(options) < 2:
            raise ValueError(
                f"{where}: expected at least 2 options, got {len(options)} ({list(options)!r}). A multiple-choice"
                " question needs the correct option and at least one distractor."
            )
        if len(options) > len(LETTERS):
            raise ValueError(f"{where}: expected at most {len(LETTERS)} options, got {len(options)}.")
        kinds = {isinstance(o, str) for o in options} | {isinstance(prompt, str)}
        if len(kinds) != 1:
            raise ValueError(f"{where}: prompt and options must all be text or all be token ids, not a mix.")
        seen: set[TextOrIds] = set()
        for o in options:
            key = o.strip() if isinstance(o, str) else o
            if key in seen:
                raise ValueError(f"{where}: option {o!r} appears twice; options must be distinct.")
            seen.add(key)
        if not isinstance(self.answer, int) or isinstance(self.answer, bool) or not 0 <= self.answer < len(options):
            raise ValueError(
                f"{where}: expected `answer` to be the 0-based index of the correct option in"
                f" [0, {len(options) - 1}], got {self.answer!r}."
            )
        if not isinstance(self.concept, str):
            raise ValueError(f"{where}: expected `concept` to be a string, got {self.concept!r}.")
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "options", options)

    @property
    def is_text(self) -> bool:
        return isinstance(self.prompt, str)

    @property
    def n_options(self) -> int:
        return len(self.options)

    def to_json(self) -> dict[str, Any]:
        def enc(v: TextOrIds) -> object:
            return v if isinstance(v, str) else list(v)

        return {
            "name": self.name,
            "prompt": enc(self.prompt),
            "options": [enc(o) for o in self.options],
            "answer": self.answer,
            "concept": self.concept,
        }


QuestionLike = Union[Question, Mapping[str, Any], Sequence[Any]]


def _as_question(q: QuestionLike, i: int) -> Question:
    if isinstance(q, Question):
        return q
    if isinstance(q, Mapping):
        return Question(**q)
    if isinstance(q, (tuple, list)) and 3 <= len(q) <= 5:
        return Question(*q)
    raise ValueError(
        f"Question #{i}: expected a Question, a dict, or a (prompt, options, answer[, name[, concept]]) tuple,"
        f" got {q!r}."
    )


@dataclass(frozen=True)
class Benchmark:
    """A named set of questions with a capability category, scored in one style.

    Args:
        name: unique within a suite; no ``"/"``.
        questions: :class:`Question` objects, dicts, or ``(prompt, options, answer[, name[, concept]])``.
        category: capability label used to group benchmarks (e.g. ``"colour"``, ``"reasoning"``).
        style: ``"cloze"`` (score the options as continuations) or ``"letters"`` (list the
            options and score their letters); see the module docstring.
        separator: inserted between the prompt and each continuation (default one space).
        instruction: put in front of every question's prompt exactly as written (``instruction
            + prompt``; default none). Text for text questions, token ids for token-id questions.

    Raises:
        ValueError: no questions, a bad question (the message names the benchmark and the
            question), duplicate question names, an unknown style, ``"letters"`` with token ids,
            or an instruction of the wrong kind.
    """

    name: str
    questions: tuple[Question, ...]
    category: str = ""
    style: Style = "cloze"
    separator: str = " "
    instruction: TextOrIds = ""

    def __init__(
        self,
        name: str,
        questions: Iterable[QuestionLike],
        *,
        category: str = "",
        style: Style = "cloze",
        separator: str = " ",
        instruction: TextOrIds = "",
    ) -> None:
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ValueError(f"Expected benchmark `name` to be a non-empty string without '/', got {name!r}.")
        converted: list[Question] = []
        for i, q in enumerate(questions):
            try:
                question = _as_question(q, i)
            except (TypeError, ValueError) as err:
                raise ValueError(f"Benchmark {name!r}, question #{i}: {err}") from None
            if not question.name:
                question = Question(question.prompt, question.options, question.answer, f"q{i}", question.concept)
            converted.append(question)
        if not converted:
            raise ValueError(f"Benchmark {name!r}: expected at least one question, got none.")
        seen: set[str] = set()
        for q in converted:
            if q.name in seen:
                raise ValueError(f"Benchmark {name!r}: duplicate question name {q.name!r}; names must be unique.")
            seen.add(q.name)
        if style not in ("cloze", "letters"):
            raise ValueError(f"Benchmark {name!r}: expected `style` 'cloze' or 'letters', got {style!r}.")
        if style == "letters" and not all(q.is_text for q in converted):
            raise ValueError(f"Benchmark {name!r}: style='letters' needs text questions; use 'cloze' with token ids.")
        if not isinstance(category, str):
            raise ValueError(f"Benchmark {name!r}: expected `category` to be a string, got {category!r}.")
        if not isinstance(separator, str):
            raise ValueError(f"Benchmark {name!r}: expected `separator` to be a string, got {separator!r}.")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "questions", tuple(converted))
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "style", style)
        object.__setattr__(self, "separator", separator)
        object.__setattr__(
            self,
            "instruction",
            check_instruction(instruction, text=converted[0].is_text, where=f"Benchmark {name!r}"),
        )

    @property
    def is_text(self) -> bool:
        return self.questions[0].is_text

    def __len__(self) -> int:
        return len(self.questions)

    def render(
        self, question: Question, instruction: Union[TextOrIds, None] = None
    ) -> tuple[TextOrIds, tuple[TextOrIds, ...]]:
        """``(context, continuations)`` scored for ``question`` in this benchmark's style.

        The context starts with ``instruction`` (default: the benchmark's own), exactly as written.
        """
        inst = self.instruction if instruction is None else instruction
        if self.style == "cloze":
            return join_instruction(inst, question.prompt), question.options
        listing = "\n".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(question.options))
        return f"{inst}{question.prompt}\n{listing}\nAnswer:", tuple(LETTERS[: question.n_options])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "style": self.style,
            "separator": self.separator,
            "instruction": self.instruction if isinstance(self.instruction, str) else list(self.instruction),
            "questions": [q.to_json() for q in self.questions],
        }


@dataclass(frozen=True)
class BenchmarkSuite:
    """An ordered collection of uniquely named :class:`Benchmark` objects.

    Raises:
        ValueError: no benchmarks, a non-Benchmark entry, or duplicate names.
    """

    benchmarks: tuple[Benchmark, ...]

    def __init__(self, benchmarks: Iterable[Benchmark]) -> None:
        converted = list(benchmarks)
        for i, b in enumerate(converted):
            if not isinstance(b, Benchmark):
                raise ValueError(f"Benchmark #{i}: expected a Benchmark, got {type(b).__name__} {b!r}.")
        named_items(converted, "benchmark", within=" within a suite")
        object.__setattr__(self, "benchmarks", tuple(converted))

    def __len__(self) -> int:
        return len(self.benchmarks)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.benchmarks)

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    @property
    def categories(self) -> list[str]:
        """The category of each benchmark, in suite order."""
        return [b.category for b in self.benchmarks]

    @property
    def n_questions(self) -> int:
        return sum(len(b) for b in self.benchmarks)

    def to_json(self) -> dict[str, Any]:
        return {"benchmarks": [b.to_json() for b in self.benchmarks]}


def as_suite(benchmarks: Union[BenchmarkSuite, Benchmark, Iterable[Benchmark]]) -> BenchmarkSuite:
    """A :class:`BenchmarkSuite` from a suite, one benchmark, or an iterable of benchmarks."""
    if isinstance(benchmarks, BenchmarkSuite):
        return benchmarks
    if isinstance(benchmarks, Benchmark):
        return BenchmarkSuite([benchmarks])
    return BenchmarkSuite(benchmarks)
