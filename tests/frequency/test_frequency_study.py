"""The controlled experiment's --quick run: what it measured online equals what the generator
built (keyword counts per cell, equal token budgets), and its contrasts equal the cell means."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from probes.demos.frequency_study import CONDITIONS, contrasts, study_items, study_rows


def test_the_design_has_equal_budgets_and_the_planned_keyword_rows() -> None:
    items = study_items(0, 3)
    rows, budget = study_rows(items, 0, lines=12, rare=2, width=64)
    assert {b["bytes"] for b in budget.values()} == {3 * 12 * 64}
    assert [budget[c]["keyword_rows"] for c in CONDITIONS] == [36, 36, 6, 6]
    assert len(rows) == 2 * 4 * 3 * 12 and all(len(r) == 64 for r in rows)
    for it in items:  # similar rows hold the probe's context; dissimilar ones never do
        holding = [r for r in rows if f" {it.keyword}" in f" {r}"]
        with_context = [r for r in holding if f"colour of {it.noun}" in r or f"colour of the {it.noun}" in r]
        assert len(with_context) == (len(holding) if it.condition[3] == "+" else 0)


def test_quick_experiment_counts_match_the_design(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "frequency_vs_similarity.py"
    spec = importlib.util.spec_from_file_location("frequency_vs_similarity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--quick", "--seeds", "1"])
    run = out["runs"][0]
    epochs = 3
    for item in run["items"]:
        planned = (12 if item["condition"][1] == "+" else 2) * epochs
        assert item["keyword_count"] == planned, item
    assert contrasts(run["cells"]) == pytest.approx(run["contrasts"])
    assert out["contrasts"]["frequency"][0] == pytest.approx(run["contrasts"]["frequency"])
    printed = capsys.readouterr().out
    assert "explains the gain" in printed and f"{run['contrasts']['similarity']:+8.3f}" in printed
