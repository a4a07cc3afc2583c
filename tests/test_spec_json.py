"""`to_json()` of format specs and label spaces round-trips: a spec rebuilt from its JSON (after a
trip through ``json.dumps``) serialises identically and classifies every text the same way.

(The older test of this name asserted only the ``kind`` string.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from probes.formats.spec import ECHO_CHAMBER_MATH, ECHO_CHAMBER_MATH_STRICT, Format, FormatSpec, LabelSpace

TEXTS = [
    "<llm-code>print(1)</llm-code> so 4",
    "<llm-code>unclosed",
    "def f(x):\n    return x\nf(3)",
    "  def   g (y): pass",
    "undefined behaviour",
    "The answer is \\boxed{4}.",
    "positive",
    " Negative!",
    "POSITIVE vibes",
    "neutral",
    "",
    "positively",
]


def rebuild(data: dict[str, Any]) -> Any:
    """A spec from its JSON, by hand: every field the JSON holds goes back where it came from."""
    if data["kind"] == "labels":
        return LabelSpace(data["labels"], separator=data["separator"], other=data["other"],
                          case_sensitive=data["case_sensitive"])
    formats = []
    for f in data["formats"]:
        test: dict[str, Any]
        if "regex" in f:
            test = {"regex": re.compile(f["regex"], f["flags"])}
        elif "contains" in f:
            test = {"contains": f["contains"]}
        else:
            pytest.skip("a format classified by a function is serialised by name only")
        formats.append(Format(f["name"], prefixes=tuple(f["prefixes"]), description=f["description"], **test))
    return FormatSpec(formats, other=data["other"])


SPECS = {
    "echo_chamber": ECHO_CHAMBER_MATH,
    "echo_chamber_strict": ECHO_CHAMBER_MATH_STRICT,
    "labels": LabelSpace(["positive", "negative"]),
    "labels_caseless": LabelSpace(["positive", "negative"], separator=": ", other="else", case_sensitive=False),
    "custom": FormatSpec([Format("boxed", regex=r"\\boxed\{", prefixes=(" \\boxed",)),
                          Format("plain", contains="answer is", description="says it")], other="rest"),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_to_json_round_trips(name: str) -> None:
    spec = SPECS[name]
    data = json.loads(json.dumps(spec.to_json()))
    again = rebuild(data)
    assert again.to_json() == data
    assert [again.classify(t) for t in TEXTS] == [spec.classify(t) for t in TEXTS]
    if isinstance(spec, FormatSpec):
        assert again.names == spec.names


def test_the_texts_exercise_every_category() -> None:
    """The round trip above is only as strong as the texts: each spec sends them to several buckets."""
    for name, spec in SPECS.items():
        assert len({spec.classify(t) for t in TEXTS}) >= 2, name
    assert LabelSpace(["positive", "negative"]).classify("POSITIVE vibes") != LabelSpace(
        ["positive", "negative"], case_sensitive=False
    ).classify("POSITIVE vibes")
