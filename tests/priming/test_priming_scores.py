"""Score formulas against hand computations and a plain Python reference loop."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from probes.priming.scores import group_logmeanexp, group_median, group_slots, priming_scores

NAN = math.nan


def _log(values: list[float]) -> torch.Tensor:
    return torch.tensor([math.log(v) if v > 0 else -math.inf for v in values], dtype=torch.float64)


def reference(p_learn, p_prefix, b_learn, b_prefix, owner, threshold=1e-3):
    """Plain-Python scores, one sample at a time, no floor."""
    out = []
    for s in range(len(p_learn)):
        js = [j for j, o in enumerate(owner) if o == s]
        ratios = [p_prefix[j] / b_prefix[j] for j in js]
        s_mem = p_learn[s] / b_learn[s]
        s_prime = sum(ratios) / len(ratios)
        out.append(
            {
                "s_mem": s_mem,
                "s_prime": s_prime,
                "log10_s_mem": math.log10(s_mem),
                "log10_s_prime": math.log10(s_prime),
                "median_prime_ratio": statistics.median(ratios),
                "delta_p_learn": p_learn[s] - b_learn[s],
                "delta_p_prime": sum(p_prefix[j] - b_prefix[j] for j in js) / len(js),
                "surprising": b_learn[s] < threshold,
            }
        )
    return out


def test_hand_computed_example() -> None:
    # sample 0: P_before 0.01 -> 0.5 on the learning context; prefixes 1e-4 -> 1e-3 and 1e-3 -> 1e-3
    # S_mem = 50, S_prime = (10 + 1) / 2 = 5.5, median of [10, 1] = 5.5
    scores = priming_scores(
        _log([0.5]), _log([1e-3, 1e-3]), _log([0.01]), _log([1e-4, 1e-3]), torch.tensor([0, 0])
    )
    assert scores.s_mem.item() == pytest.approx(50.0, rel=1e-12)
    assert scores.s_prime.item() == pytest.approx(5.5, rel=1e-12)
    assert scores.log10_s_mem.item() == pytest.approx(math.log10(50), rel=1e-12)
    assert scores.log10_s_prime.item() == pytest.approx(math.log10(5.5), rel=1e-12)
    assert scores.median_prime_ratio.item() == pytest.approx(5.5, rel=1e-12)
    assert scores.delta_p_learn.item() == pytest.approx(0.49, rel=1e-12)
    assert scores.delta_p_prime.item() == pytest.approx((9e-4 + 0.0) / 2, rel=1e-12)
    assert scores.p_before.item() == pytest.approx(0.01, rel=1e-12)
    assert scores.p_learn.item() == pytest.approx(0.5, rel=1e-12)
    assert not scores.surprising.item()  # 0.01 >= 1e-3
    assert scores.has_baseline.item()


def test_matches_reference_loop_on_random_values() -> None:
    g = torch.Generator().manual_seed(3)
    owner = [0, 0, 0, 1, 2, 2, 2, 2, 1]  # unsorted ownership, groups of 3, 2 and 4
    p_learn = (torch.rand(3, generator=g, dtype=torch.float64) ** 6).tolist()
    b_learn = (torch.rand(3, generator=g, dtype=torch.float64) ** 6).tolist()
    p_prefix = (torch.rand(9, generator=g, dtype=torch.float64) ** 8).tolist()
    b_prefix = (torch.rand(9, generator=g, dtype=torch.float64) ** 8).tolist()
    got = priming_scores(
        _log(p_learn), _log(p_prefix), _log(b_learn), _log(b_prefix), torch.tensor(owner), threshold=0.05
    ).as_dict()
    ref = reference(p_learn, p_prefix, b_learn, b_prefix, owner, threshold=0.05)
    for s, row in enumerate(ref):
        for name, value in row.items():
            if isinstance(value, bool):
                assert bool(got[name][s]) is value, name
            else:
                assert got[name][s].item() == pytest.approx(value, rel=1e-9, abs=1e-300), (name, s)


def test_no_floor_tiny_baselines_are_exact() -> None:
    # P_before 1e-40 and 1e-120 (a floor at 1e-30 used to cap these ratios at 1e27)
    scores = priming_scores(
        _log([1e-3, 1e-3]), _log([1e-6, 1e-100]), _log([1e-40, 1e-120]), _log([1e-45, 1e-110]), torch.tensor([0, 1])
    )
    assert scores.log10_s_mem.tolist() == pytest.approx([37.0, 117.0], rel=1e-12)
    assert scores.s_mem.tolist() == pytest.approx([1e37, 1e117], rel=1e-9)
    assert scores.log10_s_prime.tolist() == pytest.approx([39.0, 10.0], rel=1e-12)
    assert scores.surprising.tolist() == [True, True]


def test_overflow_only_in_the_ratio_not_in_its_log() -> None:
    # ln P_before = -800 (P = 3.6e-348, below float64's smallest normal): the ratio overflows, its log does not
    cur = torch.tensor([-1.0], dtype=torch.float64)
    base = torch.tensor([-801.0], dtype=torch.float64)
    prefix_now = torch.tensor([-2.0, -900.0], dtype=torch.float64)
    prefix_base = torch.tensor([-802.0, -901.0], dtype=torch.float64)
    scores = priming_scores(cur, prefix_now, base, prefix_base, torch.tensor([0, 0]))
    assert scores.log10_s_mem.item() == pytest.approx(800 / math.log(10), rel=1e-12)
    assert math.isinf(scores.s_mem.item())
    # mean of ratios e^800 and e^1: log = 800 + log(1 + e^-799) - log 2
    assert scores.log10_s_prime.item() == pytest.approx((800 - math.log(2)) / math.log(10), rel=1e-12)
    assert scores.p_before.item() == 0.0 and scores.surprising.item()


def test_group_logmeanexp_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(5)
    owner = torch.tensor([2, 0, 0, 1, 2, 2, 0])
    logs = torch.randn(7, generator=g, dtype=torch.float64) * 300  # spans e^-900 .. e^900
    got = group_logmeanexp(logs, owner, 4)
    for k in range(3):
        vals = [v for v, o in zip(logs.tolist(), owner.tolist()) if o == k]
        peak = max(vals)
        ref = peak + math.log(sum(math.exp(v - peak) for v in vals) / len(vals))
        assert got[k].item() == pytest.approx(ref, rel=1e-12)
    assert math.isnan(got[3].item())  # empty group
    nan_in = group_logmeanexp(torch.tensor([0.0, NAN], dtype=torch.float64), torch.tensor([0, 0]), 1)
    assert math.isnan(nan_in.item())
    minus_inf = group_logmeanexp(torch.tensor([-math.inf, -math.inf], dtype=torch.float64), torch.tensor([0, 0]), 1)
    assert minus_inf.item() == -math.inf


def test_missing_baseline_gives_nan_and_no_flags() -> None:
    scores = priming_scores(
        _log([0.1, 0.2]), _log([0.1, 0.1, 0.1]), torch.tensor([NAN, math.log(0.01)], dtype=torch.float64),
        torch.tensor([NAN, math.log(0.01), math.log(0.02)], dtype=torch.float64), torch.tensor([0, 1, 1]),
    )
    assert math.isnan(scores.s_mem[0]) and math.isnan(scores.s_prime[0])
    assert math.isnan(scores.median_prime_ratio[0]) and math.isnan(scores.p_before[0])
    assert scores.has_baseline.tolist() == [False, True]
    assert scores.surprising.tolist() == [False, False]
    assert scores.s_mem[1].item() == pytest.approx(20.0)
    assert scores.s_prime[1].item() == pytest.approx((10 + 5) / 2)


def test_float32_inputs_are_scored_in_float64() -> None:
    lp = torch.tensor([-100.0], dtype=torch.float32)  # P = 3.7e-44, below float32's normal range
    scores = priming_scores(lp, lp, lp - 5, lp - 5, torch.tensor([0]))
    assert scores.s_mem.dtype == torch.float64
    assert scores.s_mem.item() == pytest.approx(math.exp(5), rel=1e-6)
    assert scores.p_learn.item() == pytest.approx(math.exp(-100), rel=1e-6)  # not flushed to 0


def test_group_median_odd_even_and_layout() -> None:
    values = torch.tensor([5.0, 1.0, 3.0, 10.0, 2.0, 7.0, 4.0], dtype=torch.float64)
    owner = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    slots = group_slots(owner, 4)
    assert slots.tolist() == [0, 1, 2, 0, 1, 0, 1]
    med = group_median(values, owner, 4)
    assert med[:3].tolist() == [statistics.median([5, 1, 3]), statistics.median([10, 2]), statistics.median([7, 4])]
    assert math.isnan(med[3])  # an empty group
    same = group_median(values, owner, 4, slots=slots, width=3)
    assert torch.equal(torch.nan_to_num(same), torch.nan_to_num(med))


def test_bad_arguments_are_named() -> None:
    one = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="threshold"):
        priming_scores(one, one, one, one, torch.tensor([0]), threshold=2.0)
    with pytest.raises(ValueError, match="prefix_owner"):
        priming_scores(one, one, one, one, torch.tensor([0, 0]))
