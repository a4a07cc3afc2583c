"""``compare_updates`` against hand-computed rows: union of groups, missing groups, unrecorded quantities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes.updates.view import compare_shares, compare_updates, mean_shares


def _stats(groups, share, relative=None, drift=None):
    return {"groups": groups, "readings": len(share), "step": len(share), "share": mean_shares(np.array(share)),
            "relative": None if relative is None else mean_shares(np.array(relative)),
            "drift_relative": None if drift is None else np.array(drift, dtype=np.float64)}


def test_compare_updates_by_hand() -> None:
    a = _stats(["embed", "block.00", "other"], [[0.5, 0.4, 0.1], [0.3, 0.6, 0.1]],
               relative=[[0.2, 0.1, 0.0], [0.4, math.nan, 0.2]], drift=[0.7, 0.2, 0.05])
    b = _stats(["embed", "block.00", "block.01"], [[0.1, 0.2, 0.7]])  # no relative, no drift recorded
    rows = {r["group"]: r for r in compare_updates({"pre": a, "sft": b})}
    assert list(rows) == ["embed", "block.00", "other", "block.01"]
    assert rows["embed"]["share"] == {"pre": pytest.approx(0.4), "sft": pytest.approx(0.1)}
    assert rows["embed"]["share_difference"] == {"pre": 0.0, "sft": pytest.approx(-0.3)}
    assert rows["block.00"]["relative"] == {"pre": pytest.approx(0.1), "sft": None}  # the NaN reading left out
    assert rows["block.00"]["relative_difference"] == {"pre": 0.0, "sft": None}
    # a group one run lacks: share 0 there, no relative update or drift
    assert rows["other"]["share"] == {"pre": pytest.approx(0.1), "sft": 0.0}
    assert rows["block.01"]["share"] == {"pre": 0.0, "sft": pytest.approx(0.7)}
    assert rows["block.01"]["share_difference"]["sft"] == pytest.approx(0.7)
    assert rows["block.01"]["relative"] == {"pre": None, "sft": None}
    assert rows["other"]["drift_relative"] == {"pre": pytest.approx(0.05), "sft": None}
    # the two-run helper gives the same shares and differences
    two = compare_shares((a["groups"], np.array([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])),
                         (b["groups"], np.array([[0.1, 0.2, 0.7]])))
    for r in two:
        assert rows[r["group"]]["share"]["pre"] == pytest.approx(r["share_a"])
        assert rows[r["group"]]["share"]["sft"] == pytest.approx(r["share_b"])
        assert rows[r["group"]]["share_difference"]["sft"] == pytest.approx(r["difference"])
