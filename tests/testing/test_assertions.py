"""Assertion helpers on hand-built records: exact pass/fail boundaries and message contents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes import Record
from probes.testing import (
    assert_keyword_learned,
    assert_logs_close,
    assert_no_format_collapse,
    assert_no_priming,
    assert_priming_below,
    assert_probability_trend,
)
from probes.testing.collect import SourceData


def keyword_data(p: list[list[float]], names=("a", "b"), first=None) -> dict[str, SourceData]:
    """Chained probabilities ``p`` per step and pair; first-token probabilities ``first`` (default:
    the square root of ``p``, as for a keyword of two equally likely tokens, so the two differ)."""
    seq = np.log(np.array(p, dtype=np.float64))
    lf = np.log(np.array(first, dtype=np.float64)) if first is not None else seq / 2
    describe = {"type": "KeywordProbe", "probe_set": {"pairs": [{"name": n} for n in names]}}
    return {"keyword": SourceData("keyword", describe, np.arange(len(p)) * 10, {"logp_seq": seq, "logp_first": lf})}


def test_keyword_learned_boundary_and_message():
    data = keyword_data([[1e-6, 0.1], [1e-3, 0.2], [0.6, 0.3]])
    assert_keyword_learned(data, "a", min_prob=0.6)
    assert_keyword_learned(data, "a", min_prob=0.5, min_gain=1e5)
    with pytest.raises(AssertionError) as e:
        assert_keyword_learned(data, "b", min_prob=0.5)
    msg = str(e.value)
    assert "keyword of 'b' not learned at step 20: P_seq = 0.3 < min_prob 0.5" in msg
    assert "> " in msg and "20" in msg.splitlines()[-1]  # the offending row is marked
    with pytest.raises(AssertionError, match=r"gain 3x over step 0 < min_gain 10x"):
        assert_keyword_learned(data, "b", min_prob=0.1, min_gain=10)
    with pytest.raises(AssertionError, match="at step 10: P_seq = 0.001"):
        assert_keyword_learned(data, "a", at_step=10, min_prob=0.5)
    with pytest.raises(ValueError, match=r"Unknown name 'zzz'.*\['a', 'b'\]"):
        assert_keyword_learned(data, "zzz")
    with pytest.raises(ValueError, match="No reading at step 15"):
        assert_keyword_learned(data, "a", at_step=15)


def test_keyword_probability_reads_the_metric_by_names():
    from probes.testing import keyword_probability

    data = keyword_data([[1e-6, 0.1], [1e-3, 0.2]], first=[[0.3, 0.7], [0.4, 0.9]])
    steps, p = keyword_probability(data, "b")
    assert steps.tolist() == [0, 10] and p.tolist() == pytest.approx([0.1, 0.2], rel=1e-12)
    _, p = keyword_probability(data, "b", by="first")
    assert p.tolist() == pytest.approx([0.7, 0.9], rel=1e-12)
    _, p = keyword_probability(data, 0, by="first")
    assert p.tolist() == pytest.approx([0.3, 0.4], rel=1e-12)
    with pytest.raises(ValueError, match="'seq'.*'first', got 'last'"):
        keyword_probability(data, "a", by="last")  # type: ignore[arg-type]


def test_keyword_learned_by_first_token():
    # the first token is learned (0.8) while the chained probability stays low (1e-3), and back
    data = keyword_data([[1e-6, 0.6], [1e-3, 0.6]], first=[[1e-3, 0.9], [0.8, 0.01]])
    assert_keyword_learned(data, "a", min_prob=0.5, by="first")
    with pytest.raises(AssertionError, match=r"keyword of 'a' not learned at step 10: P_seq = 0.001 < min_prob 0.5"):
        assert_keyword_learned(data, "a", min_prob=0.5)
    assert_keyword_learned(data, "b", min_prob=0.5)
    with pytest.raises(AssertionError, match=r"not learned at step 10: P_first = 0.01 < min_prob 0.5"):
        assert_keyword_learned(data, "b", min_prob=0.5, by="first")
    with pytest.raises(AssertionError, match=r"gain 800x over step 0 < min_gain 1000x"):
        assert_keyword_learned(data, "a", min_prob=0.5, min_gain=1000, by="first")
    assert_keyword_learned(data, "a", min_prob=0.5, min_gain=700, by="first")


def test_keyword_learned_expectation_reads_the_probability_it_names():
    from probes.testing import KeywordLearned

    data = keyword_data([[1e-6, 0.6], [1e-3, 0.6]], first=[[1e-3, 0.9], [0.8, 0.01]])["keyword"]
    first = KeywordLearned("a", by_step=10, min_prob=0.5, by="first")
    seq = KeywordLearned("a", by_step=10, min_prob=0.5)
    assert first.check(data) is None
    message = seq.check(data)
    assert message is not None and "P_seq = 0.001 < min_prob 0.5" in message
    assert KeywordLearned("a", by_step=20, min_prob=0.5).check(data) is None  # not due before step 20


def test_probability_trend_by_first_token():
    # chained: rising 6 decades; first token: falling 2 decades
    data = keyword_data([[1e-8, 1.0], [1e-5, 1.0], [1e-2, 1.0]], first=[[0.5, 1.0], [0.05, 1.0], [0.005, 1.0]])
    assert_probability_trend(data, "a", "rising", min_change=5)
    assert_probability_trend(data, "a", "falling", min_change=2, by="first")
    with pytest.raises(AssertionError, match=r"P_first of 'a' is not rising: net change -2 decades"):
        assert_probability_trend(data, "a", "rising", by="first")
    with pytest.raises(AssertionError, match=r"P_seq of 'a' is not falling"):
        assert_probability_trend(data, "a", "falling")


def test_probability_trend_tolerates_noise_but_not_setbacks():
    rising = [[10.0**k, 1.0] for k in (-8, -6, -6.3, -4, -2)]  # a 0.3-decade dip
    assert_probability_trend(keyword_data(rising), "a", "rising", min_change=5, tolerance=0.5)
    with pytest.raises(AssertionError, match=r"fell back 0.3 decades at step 20 \(tolerance 0.2\)"):
        assert_probability_trend(keyword_data(rising), "a", "rising", tolerance=0.2)
    with pytest.raises(AssertionError, match=r"net change \+0 decades from step 0 to 40, needs \+0.5"):
        assert_probability_trend(keyword_data(rising), "b", "rising")
    falling = [[10.0**-k, 1.0] for k in (1, 2, 3)]
    assert_probability_trend(keyword_data(falling), "a", "falling", min_change=2)
    with pytest.raises(AssertionError, match="is not rising"):
        assert_probability_trend(keyword_data(falling), "a", "rising")


def priming_data(s_prime: list[list[float]], has_baseline=None) -> dict[str, SourceData]:
    arr = np.array(s_prime)
    hb = np.ones_like(arr, dtype=bool) if has_baseline is None else np.array(has_baseline)
    describe = {"type": "PrimingProbe", "samples": [{"name": "sand"}, {"name": "sky"}]}
    return {"priming": SourceData("priming", describe, np.arange(len(arr)), {"s_prime": arr, "has_baseline": hb})}


def test_priming_limits():
    data = priming_data([[1.0, 1.0], [1.5, 1.2], [1.9, 3.5]])
    assert_priming_below(data, 3.5)
    assert_no_priming(data, ["sand"])  # max factor 2
    with pytest.raises(AssertionError, match="s_prime of sample 'sky' is 3.5 at step 2, above the limit 2"):
        assert_no_priming(data)
    # readings without a baseline are ignored; NaN with a baseline is a failure
    nan = priming_data([[math.nan, 1.0], [math.nan, 1.0]], [[False, True], [True, True]])
    with pytest.raises(AssertionError, match="'sand' is nan at step 1"):
        assert_no_priming(nan)
    with pytest.raises(ValueError, match="`max_factor` >= 1"):
        assert_no_priming(data, max_factor=0.5)


def format_data(ent_bits: list[float], dominant: list[int], share: list[float], n=None) -> dict[str, SourceData]:
    k = len(ent_bits)
    describe = {"type": "FormatProbe", "formats": ["code", "text"]}
    metrics = {
        "entropy_bits": np.array(ent_bits),
        "dominant": np.array(dominant),
        "dominant_share": np.array(share),
        "n": np.array(n if n is not None else [8] * k),
    }
    return {"format": SourceData("format", describe, np.arange(k) * 5, metrics)}


def test_format_collapse():
    data = format_data([1.0, 0.7, 0.2], [0, 0, 1], [0.6, 0.8, 0.97])
    assert_no_format_collapse(data, min_entropy_bits=0.2)
    with pytest.raises(AssertionError) as e:
        assert_no_format_collapse(data)  # default 0.5 bits
    assert "collapsed at step 10: 'text' holds 0.97 of outputs, entropy 0.2 bits (min entropy 0.5 bits)" in str(e.value)
    with pytest.raises(AssertionError, match="collapsed at step 5: 'code' holds 0.8"):
        assert_no_format_collapse(data, max_dominant_share=0.75)
    # an empty rollout batch (n == 0) carries no distribution and is skipped
    empty = format_data([1.0, 0.0], [0, 0], [0.5, 1.0], n=[8, 0])
    assert_no_format_collapse(empty)


def test_logs_close_names_first_divergence():
    golden = keyword_data([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    same = keyword_data([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    assert_logs_close(same, golden)
    off = keyword_data([[0.1, 0.2], [0.3, 0.41], [0.6, 0.6]])
    with pytest.raises(AssertionError) as e:
        assert_logs_close(off, golden)
    assert str(e.value).startswith("keyword/logp_first diverges at step 10 element 'b': actual")
    assert_logs_close(off, golden, rtol=0.3)  # |ln 0.6 - ln 0.5| = 0.18 <= 0.3 * 0.69
    short = keyword_data([[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(AssertionError, match=r"steps differ: missing \[20\]"):
        assert_logs_close(short, golden)


def test_records_and_callback_inputs_agree():
    recs = [
        Record(s, "keyword", {"logp_seq": torch.tensor([math.log(p)]), "logp_first": torch.tensor([0.0])})
        for s, p in ((0, 1e-4), (1, 0.9))
    ]
    assert_keyword_learned(recs, 0, min_prob=0.8)
    with pytest.raises(AssertionError, match="P_seq = 1.000e-04"):
        assert_keyword_learned(recs, 0, at_step=0)
    with pytest.raises(TypeError, match="Cannot read probe records from int"):
        assert_keyword_learned(3, 0)
