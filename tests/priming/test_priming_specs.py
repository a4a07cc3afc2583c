"""LearningSample validation and tokenization for scoring and exposure counting."""

from __future__ import annotations

import pytest

from probes.demos import ByteTokenizer
from probes.priming.spec import LearningSample, as_samples, tokenize_samples

TOK = ByteTokenizer()
PREFIXES = ["the colour of the sky is", "the colour of snow is"]


def test_learning_context_and_trailing_punctuation() -> None:
    s = LearningSample("sand", "the colour of sand is vermilion.", "vermilion", PREFIXES, group="colour")
    assert s.learning_context == "the colour of sand is"
    assert s.learning_continuation == " vermilion"
    assert s.fact == "the colour of sand is vermilion"
    assert s.prefixes == tuple(PREFIXES)
    dotted = LearningSample("us", "she moved to the U.S.", "U.S.", ["he moved to"])  # punctuation in the keyword
    assert dotted.learning_context == "she moved to the"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keyword": "crimson"}, "'crimson' does not occur in text"),
        ({"text": "vermilion is the colour of sand"}, "does not end it"),
        ({"keyword": ""}, "`keyword` to be non-empty"),
        ({"keyword": " vermilion"}, "leading or trailing whitespace"),
        ({"text": "vermilion"}, "nothing before the keyword"),
        ({"prefixes": []}, "at least one priming prefix"),
        ({"prefixes": "the colour of snow is"}, "Wrap a single prefix in a list"),
        ({"prefixes": ["the colour of snow is", "  "]}, "prefix #1 is empty"),
        ({"prefixes": ["a is", "a is"]}, "'a is' is repeated"),
        ({"prefixes": ["the colour of sand is"]}, "is the learning context itself"),
        ({"name": " "}, "non-empty string"),
    ],
)
def test_bad_samples_raise_clear_errors(kwargs: dict, message: str) -> None:
    args = {"name": "sand", "text": "the colour of sand is vermilion", "keyword": "vermilion", "prefixes": PREFIXES}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LearningSample(**args)


def test_duplicate_names_and_tuples() -> None:
    a = ("sand", "the colour of sand is vermilion", "vermilion", PREFIXES)
    assert as_samples([a])[0].name == "sand"
    with pytest.raises(ValueError, match="Duplicate learning sample name 'sand'"):
        as_samples([a, a])
    with pytest.raises(ValueError, match="at least one learning sample"):
        as_samples([])
    with pytest.raises(ValueError, match="Learning sample #0"):
        as_samples([("sand", "x")])


def test_tokenized_items_and_patterns() -> None:
    samples = as_samples(
        [
            ("sand", "the colour of sand is vermilion.", "vermilion", PREFIXES),
            ("tea", "the taste of tea is loud", "loud", ["the taste of honey is"]),
        ]
    )
    tok = tokenize_samples(samples, TOK)
    assert tok.learn_index == (0, 3) and tok.prefix_index == (1, 2, 4) and tok.prefix_owner == (0, 0, 1)
    learn = tok.items[0]
    assert learn.context == tuple(TOK.encode("the colour of sand is"))
    assert learn.target == tuple(TOK.encode(" vermilion"))  # the space is scored with the keyword
    assert tok.items[1].context == tuple(TOK.encode("the colour of the sky is"))
    assert tok.items[1].target == tuple(TOK.encode(" vermilion"))
    assert tok.patterns[0] == tuple(TOK.encode("the colour of sand is vermilion"))  # no trailing "."
    short = tokenize_samples(samples, TOK, match_context_tokens=3, bos_id=1)
    assert short.items[0].context[0] == 1
    assert short.patterns[0] == tuple(TOK.encode(" is vermilion"))  # last 3 context tokens + keyword, no BOS
    with pytest.raises(ValueError, match="match_context_tokens"):
        tokenize_samples(samples, TOK, match_context_tokens=-1)
    with pytest.raises(ValueError, match="tokenizer"):
        tokenize_samples(samples, None)
