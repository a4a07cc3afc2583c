"""Validation of probe specifications and tokenization: clear errors naming the pair."""

from __future__ import annotations

import warnings

import pytest

from probes import KeywordProbe, ProbePair, ProbeSet
from probes.demos import ByteTokenizer


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("p", "the sky is", ""), r"'p'.*`keyword` to be non-empty"),
        (("p", "the sky is", "   "), r"'p'.*`keyword` to be non-empty"),
        (("p", "", "blue"), r"'p'.*`context` to be non-empty"),
        (("p", 42, "blue"), r"'p'.*`context` to be a string or a sequence of int token ids, got int 42"),
        (("p", "the sky is", None), r"'p'.*`keyword`.*got NoneType"),
        (("p", "the sky is", [1, 2]), r"'p'.*both be text or both be token ids"),
        (("", "the sky is", "blue"), r"`name` to be a non-empty string"),
    ],
)
def test_bad_pairs_raise_value_error_naming_the_pair(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        ProbePair(*args)


def test_duplicate_names_and_empty_sets():
    with pytest.raises(ValueError, match="Duplicate probe pair name 'a'"):
        ProbeSet([("a", "x", "y"), ("a", "x", "z")])
    with pytest.raises(ValueError, match="at least one probe pair"):
        ProbeSet([])
    with pytest.raises(ValueError, match=r"Probe pair #0: expected a ProbePair"):
        ProbeSet(["oops"])


def test_keyword_that_tokenizes_to_nothing():
    def drop_digits(text: str) -> list[int]:
        return [ord(c) for c in text if not c.isdigit()]

    with pytest.raises(ValueError, match=r"'num'.*'123' tokenizes to nothing"):
        KeywordProbe([("num", "the answer is", "123")], drop_digits, separator="")


def test_text_pairs_need_a_tokenizer():
    with pytest.raises(ValueError, match=r"'a' is text but no tokenizer"):
        KeywordProbe([("a", "the sky is", "blue")], None)


def test_token_id_outside_vocabulary_named_at_setup(tiny_gpt):
    probe = KeywordProbe([("ids", [1, 2, 3], [300])])
    with pytest.raises(ValueError, match=r"'ids'.*keyword token id 300 is outside the model's vocabulary \[0, 256\)"):
        probe.read(tiny_gpt)


def test_pretokenized_pairs_accept_tensors():
    import torch

    pair = ProbePair("t", torch.tensor([1, 2]), torch.tensor([3]))
    assert pair.context == (1, 2) and pair.keyword == (3,)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`every_n_steps` to be a positive int, got 0"):
        KeywordProbe([("a", "x", "y")], ByteTokenizer(), every_n_steps=0)
    with pytest.raises(ValueError, match=r"`threshold` in \(0, 1\), got 2"):
        KeywordProbe([("a", "x", "y")], ByteTokenizer(), threshold=2)
    with pytest.raises(ValueError, match="`name` to be a non-empty string without '/'"):
        KeywordProbe([("a", "x", "y")], ByteTokenizer(), name="a/b")


def test_no_boundary_warning_when_nothing_merges():
    # the warning itself (merged boundary, readable tokens, once per pair) is in tests/test_convention.py
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KeywordProbe([("ok", "the sky is", "blue")], ByteTokenizer())
