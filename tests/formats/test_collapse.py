"""The pure collapse decision: thresholds, patience, streaks, no-evidence records, state."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from probes.formats.collapse import CollapseCriterion, CollapseState, collapse_condition, evaluate_collapse
from probes.formats.entropy import distribution_summary

NAMES = ["equals", "ans", "other"]


def run(dists, criterion, names=NAMES):
    """Feed distributions (over named formats; None = an empty record) through the detector."""
    state, out = CollapseState(), []
    for step, d in enumerate(dists):
        if d is None:
            share = norm_h = math.nan
            dominant = -1
        else:
            s = distribution_summary(torch.tensor(d, dtype=torch.float64))
            share, norm_h, dominant = float(s["dominant_share"]), float(s["norm_entropy"]), int(s["dominant"])
        cond = collapse_condition(share, norm_h, criterion)
        onset, reason, state = evaluate_collapse(
            state,
            cond,
            step=step,
            dominant=dominant,
            share=share,
            norm_entropy=norm_h,
            criterion=criterion,
            names=names,
        )
        out.append((onset, reason, state))
    return out


def brute_force_states(qualifies, patience):
    """Reference by sliding windows: collapse when the last `patience` records all qualify; recover
    when the last `patience` records all fail. Returns (collapsed after each record, onset flags)."""
    collapsed, states, onsets = False, [], []
    for i in range(len(qualifies)):
        window = qualifies[max(0, i - patience + 1) : i + 1]
        onset = False
        if len(window) == patience:
            if not collapsed and all(window):
                collapsed = onset = True
            elif collapsed and not any(window):
                collapsed = False
        states.append(collapsed)
        onsets.append(onset)
    return states, onsets


@pytest.mark.parametrize("patience", [1, 2, 3, 4])
def test_patience_and_hysteresis_against_brute_force(patience):
    rng = np.random.default_rng(patience)
    shares = np.clip(0.9 + rng.normal(0, 0.05, 300), 0.5, 1.0)
    out = run([[s, 1 - s] for s in shares], CollapseCriterion(tau=0.9, patience=patience))
    want_states, want_onsets = brute_force_states([s >= 0.9 for s in shares], patience)
    assert [st.collapsed for _, _, st in out] == want_states
    assert [o for o, _, _ in out] == want_onsets
    assert sum(want_onsets) >= 2  # the sequence exercises onsets and recoveries
    first = want_onsets.index(True)
    final = out[-1][2]
    assert final.first_step == first and final.first_format == 0
    assert final.first_share == pytest.approx(shares[first])
    assert final.onsets == sum(want_onsets)


def test_a_single_dip_does_not_end_a_collapse():
    crit = CollapseCriterion(tau=0.9, patience=3)
    out = run([[0.95, 0.05]] * 3 + [[0.6, 0.4]] * 2 + [[0.95, 0.05]] + [[0.6, 0.4]] * 3, crit)
    assert [st.collapsed for _, _, st in out] == [False, False, True, True, True, True, True, True, False]
    assert "toward recovery" in out[4][1] and "Recovered" in out[-1][1]


def test_onset_message_names_format_share_step_and_thresholds():
    out = run([[0.95, 0.05]] * 3, CollapseCriterion(tau=0.9, eps=0.3, patience=3))
    onset, reason, state = out[-1]
    assert onset and state.collapsed and state.first_step == 2 and state.first_streak_start == 0
    for piece in ("'equals'", "0.950", "step 2", "tau=0.9", "eps=0.3", "patience=3"):
        assert piece in reason
    assert [o for o, _, _ in out] == [False, False, True]


def test_entropy_criterion_alone():
    crit = CollapseCriterion(tau=None, eps=0.5, patience=1)
    out = run([[0.8, 0.2], [0.95, 0.05]], crit)  # H/ln2 = 0.722, 0.286
    assert [o for o, _, _ in out] == [False, True]


def test_streak_restarts_when_the_dominant_format_changes():
    out = run([[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.05, 0.95]], CollapseCriterion(tau=0.9, patience=3))
    assert not any(o for o, _, _ in out)
    assert out[-1][2].streak == 2 and out[-1][2].streak_format == 1 and out[-1][2].streak_start == 2


def test_single_format_collapses_at_once():
    # one named format: its share among classified outputs is 1 and its normalized entropy 0
    out = run([[5.0]], CollapseCriterion(tau=0.9, eps=0.1, patience=1), names=["only", "other"])
    assert out[0][0] and "'only'" in out[0][1]


@pytest.mark.parametrize("bad", [None, [0.0, 0.0]])
def test_no_evidence_leaves_the_state_unchanged(bad):
    """An empty rollout batch, or only unclassified outputs, neither advances nor resets a streak."""
    crit = CollapseCriterion(tau=0.9, patience=3)
    out = run([[0.95, 0.05], [0.95, 0.05], bad, [0.95, 0.05]], crit)
    assert out[2][2] == out[1][2]
    assert "No evidence" in out[2][1]
    assert [o for o, _, _ in out] == [False, False, False, True]


def test_recovery_and_second_onset_keep_the_first_collapse():
    crit = CollapseCriterion(tau=0.9, patience=1)
    out = run([[0.95, 0.05], [0.6, 0.4], [0.02, 0.98]], crit)
    assert [o for o, _, _ in out] == [True, False, True]
    final = out[-1][2]
    assert final.onsets == 2 and final.first_step == 0 and final.first_format == 0 and final.collapsed


def test_condition_with_nan_on_one_side_uses_the_other():
    crit = CollapseCriterion(tau=0.9, eps=0.2)
    assert collapse_condition(math.nan, 0.1, crit) is True
    assert collapse_condition(0.5, math.nan, crit) is False
    assert collapse_condition(math.nan, math.nan, crit) is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tau": None, "eps": None}, "at least one"),
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"tau": math.nan}, "tau"),
        ({"eps": 1.0}, "eps"),
        ({"patience": 0}, "patience"),
        ({"patience": True}, "patience"),
    ],
)
def test_criterion_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CollapseCriterion(**kwargs)


def test_state_dict_round_trip_with_weights_only_load():
    out = run([[0.95, 0.05]] * 4, CollapseCriterion(tau=0.9, patience=2))
    state = out[-1][2]
    buf = io.BytesIO()
    torch.save({"collapse": state.state_dict()}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["collapse"]
    assert loaded["version"] == 1
    assert CollapseState.from_state_dict(loaded) == state
    assert CollapseState.from_state_dict({}) == CollapseState()
