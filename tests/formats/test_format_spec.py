"""FormatSpec: precedence, the "other" bucket, validation, the paper's formats, LabelSpace."""

from __future__ import annotations

import re

import pytest

from probes.formats.spec import (
    ECHO_CHAMBER_MATH,
    ECHO_CHAMBER_MATH_STRICT,
    Format,
    FormatSpec,
    LabelSpace,
    as_format_spec,
)


def _brute_force(spec: FormatSpec, text: str) -> int:
    """Reference: the first format (in order) whose own test says yes, else len(spec)."""
    for i, f in enumerate(spec.formats):
        if f.regex is not None and re.search(f.regex if isinstance(f.regex, str) else f.regex.pattern, text, f.flags):
            return i
        if f.contains is not None and f.contains in text:
            return i
        if f.fn is not None and f.fn(text):
            return i
    return len(spec)


def test_first_match_wins_and_other_bucket():
    spec = FormatSpec(
        [
            Format("code", contains="def "),
            Format("shouty", fn=lambda t: t.isupper()),
            Format("number", regex=r"\d+"),
        ]
    )
    texts = ["def f(): 1", "DEF 1", "HELLO", "x = 12", "plain", "", "def 12"]
    got = spec.classify_many(texts)
    assert got == [_brute_force(spec, t) for t in texts]
    assert got == [0, 1, 1, 2, 3, 3, 0]  # "DEF 1" is upper case (digits do not count)
    assert spec.names == ["code", "shouty", "number", "other"]
    assert spec.other_index == 3


def test_order_changes_the_answer():
    a, b = Format("a", contains="x"), Format("b", contains="xy")
    ab, ba = FormatSpec([a, b]), FormatSpec([b, a])
    assert ab.names[ab.classify("xy")] == "a"
    assert ba.names[ba.classify("xy")] == "b"
    assert ab.names[ab.classify("x")] == ba.names[ba.classify("x")] == "a"


def test_custom_other_name():
    spec = FormatSpec([Format("a", contains="a")], other="unmatched")
    assert spec.names == ["a", "unmatched"]
    assert spec.classify("zzz") == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one"),
        ({"regex": "a", "contains": "a"}, "exactly one"),
        ({"regex": "("}, "invalid regex"),
        ({"contains": ""}, "non-empty"),
        ({"fn": 3}, "callable"),
        ({"contains": "a", "prefixes": ("",)}, "non-empty string"),
        ({"contains": "a", "prefixes": ("x", "x")}, "duplicate"),
    ],
)
def test_format_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Format("f", **kwargs)


def test_spec_validation():
    with pytest.raises(ValueError, match="at least one format"):
        FormatSpec([])
    with pytest.raises(ValueError, match="Duplicate format name 'a'"):
        FormatSpec([Format("a", contains="x"), Format("a", contains="y")])
    with pytest.raises(ValueError, match="reserved"):
        FormatSpec([Format("other", contains="x")])
    with pytest.raises(ValueError, match=r"expected a probes\.formats\.Format"):
        FormatSpec(["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="overlap"):
        FormatSpec([Format("a", contains="x", prefixes=("def",)), Format("b", contains="y", prefixes=("define",))])
    with pytest.raises(ValueError, match="non-empty string without '/'"):
        Format("a/b", contains="x")


def test_classify_rejects_non_strings_and_bad_callables():
    spec = FormatSpec([Format("a", fn=lambda t: "yes")])  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="must return True or False"):
        spec.classify("text")
    with pytest.raises(TypeError, match="decode token ids"):
        ECHO_CHAMBER_MATH.classify([1, 2, 3])  # type: ignore[arg-type]


def test_require_prefixes_names_the_culprit():
    spec = FormatSpec([Format("a", contains="x", prefixes=("x",)), Format("b", contains="y")])
    assert not spec.has_prefixes
    with pytest.raises(ValueError, match=r"\['b'\]"):
        spec.require_prefixes()


PAPER_CASES = [
    # text, loose (paper) label, strict label
    ("<llm-code>\nx = 3 + 4\nprint(x)\n</llm-code>\n<llm-code-output>7</llm-code-output>", 0, 0),
    ("def simple_math_problem() -> int:\n    return 3 + 4", 1, 1),
    ("We add 3 and 4 to get \\boxed{7}.", 2, 2),
    ("Let's define x as the number of apples. Then x = 7.", 1, 2),  # 'def' inside a word
    ("By default the answer is 7.", 1, 2),
    ("<llm-code>\nx = 3 +", 0, 2),  # unterminated block
    ("The answer:\ndef f(x):\n    return x", 1, 1),  # code quoted in prose: code for both
    ("   \n", 3, 3),  # whitespace only: other
    ("", 3, 3),
]


@pytest.mark.parametrize("text,loose,strict", PAPER_CASES)
def test_echo_chamber_math_loose_and_strict(text, loose, strict):
    assert ECHO_CHAMBER_MATH.classify(text) == loose
    assert ECHO_CHAMBER_MATH_STRICT.classify(text) == strict
    # the loose spec is literally the paper's ordered substring test
    ref = 0 if "<llm-code>" in text else 1 if "def" in text else 2 if text.strip() else 3
    assert ECHO_CHAMBER_MATH.classify(text) == ref


def test_echo_chamber_names_and_prefixes():
    assert ECHO_CHAMBER_MATH.names == ["openmathinstruct1_code", "tinygsm_code", "natural_language", "other"]
    assert [f.prefixes for f in ECHO_CHAMBER_MATH] == [("<llm-code>",), ("def",), ("Let's",)]
    assert ECHO_CHAMBER_MATH.has_prefixes and ECHO_CHAMBER_MATH_STRICT.has_prefixes


def test_label_space():
    labels = LabelSpace(["positive", "negative", "neutral"])
    cases = {" positive": 0, "negative.": 1, "neutral\n": 2, "positively": 3, "Positive": 3, "maybe": 3, "": 3}
    assert {t: labels.classify(t) for t in cases} == cases
    assert labels.names == ["positive", "negative", "neutral", "other"]
    assert [f.prefixes for f in labels.spec] == [(" positive",), (" negative",), (" neutral",)]
    insensitive = LabelSpace(["yes", "no"], case_sensitive=False, separator="")
    assert insensitive.classify("YES!") == 0 and insensitive.spec.formats[0].prefixes == ("yes",)
    assert as_format_spec(labels) is labels.spec
    with pytest.raises(ValueError, match="overlap"):
        LabelSpace(["pos", "positive"])
    with pytest.raises(ValueError, match="Duplicate"):
        LabelSpace(["a", "a"])
    with pytest.raises(ValueError, match="at least one label"):
        LabelSpace([])


def test_to_json_round_trips_through_json():
    import json

    for spec in (ECHO_CHAMBER_MATH, ECHO_CHAMBER_MATH_STRICT, LabelSpace(["a", "b"])):
        data = json.loads(json.dumps(spec.to_json()))
        assert data["kind"] in ("formats", "labels")
