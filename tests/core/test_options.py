"""ScoringOptions: one object for the seven scoring options, folded in from keyword arguments."""

from __future__ import annotations

import pytest

from probes import KeywordProbe
from probes.core.options import ScoringOptions
from probes.demos import ByteTokenizer

PAIRS = [("sand", "the colour of sand is", "yellow")]


def test_keyword_arguments_and_object_give_the_same_options() -> None:
    a = KeywordProbe(PAIRS, ByteTokenizer(), model="model", token_budget=512)
    b = KeywordProbe(PAIRS, ByteTokenizer(), scoring=ScoringOptions(model="model", token_budget=512))
    assert a.scoring == b.scoring and a.scoring.hub_key() == b.scoring.hub_key()
    # an option given both ways is taken when it agrees, refused when it does not
    same = KeywordProbe(PAIRS, ByteTokenizer(), scoring=ScoringOptions(model="model"), model="model")
    assert same.scoring.model == "model"
    with pytest.raises(ValueError, match=r"\['model'\] given both in `scoring=` and as keyword arguments"):
        KeywordProbe(PAIRS, ByteTokenizer(), scoring=ScoringOptions(model="model"), model="other")


def test_bad_options_are_named() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['modle'\]"):
        KeywordProbe(PAIRS, ByteTokenizer(), modle="model")
    with pytest.raises(ValueError, match="`token_budget` to be a positive int or .auto., got 0"):
        ScoringOptions(token_budget=0)
    with pytest.raises(ValueError, match="`truncation` to be 'error' or 'left'"):
        ScoringOptions(truncation="right")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`bos_id` to be None or a token id >= 0"):
        ScoringOptions(bos_id=-1)
