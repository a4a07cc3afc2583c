"""One ranking rule per kind in the dashboard, ``probes summary`` and ``probes plot`` (docs/console.md),
and summary metric rows only where they carry data (a scored FormatProbe)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tests.cli._runs import make_run

from probes import open_run
from probes.console import Dashboard
from probes.console.numbers import fmt_num
from probes.core import kinds
from probes.keyword.view import pair_names, rank_pairs
from probes.priming.view import rank_samples
from probes.runlog.summary import summarize


@pytest.fixture(scope="module")
def run_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("rank") / "run", seed=0, steps=4)


def _expected_pairs(run) -> list[str]:  # the rule from the log, by hand: |Δ log10 p_seq|, largest first
    lp = run.read("keyword/logp_seq")[1].astype(np.float64) / math.log(10)
    names = pair_names(run.describe("keyword"))
    change = np.abs(lp[-1] - lp[0])
    return [names[j] for j in sorted(range(len(names)), key=lambda j: (-change[j], j))]


def test_keyword_views_rank_pairs_alike(run_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = open_run(run_path)
    expected = _expected_pairs(run)
    summary = {s["source"]: s for s in summarize(run)["sources"]}["keyword"]["keyword"]
    assert [r["pair"] for r in summary["pairs"]] == expected
    assert summary["sorted_by"] == "|delta_log10_p_seq|"
    dashboard = Dashboard(clock=None)
    dashboard.register_source("keyword", run.describe("keyword"))
    for record in run.records(["keyword"]):
        dashboard.write(record)
    dashboard.flush()
    assert [row[0] for row in dashboard.states["keyword"].top(len(expected))] == expected
    fig, ax = plt.subplots()
    kinds.of(run.describe("keyword")).plot(ax, run, "keyword", 3)
    assert sorted(line.get_label() for line in ax.get_lines()) == sorted(expected[:3])
    plt.close(fig)


def test_rules_put_non_finite_where_documented() -> None:
    assert rank_pairs([0.0, 0.0, 0.0, 0.0], [1.0, float("nan"), -3.0, 1.0]) == [1, 2, 0, 3]  # NaN change first
    assert rank_samples([0.5, float("nan"), 2.0, 0.5]) == [2, 0, 3, 1]  # most primed first, no value last


def test_summary_of_a_scored_format_probe_shows_rows_with_data(run_path: Path, capsys) -> None:
    from probes.cli import main

    assert main(["summary", str(run_path)]) == 0
    text = capsys.readouterr().out
    block = text[text.index("format (FormatProbe)"):]
    table = block[: block.index("no data or shown below")]
    names = [line.split()[0] for line in table.splitlines()[2:] if line.strip()]
    for hidden in ("n", "mean_reward", "accuracy", "dominant"):
        assert hidden not in names, table
    assert {"dist", "entropy_bits", "dominant_share"} <= set(names)
    assert "no data or shown below: dominant, n, mean_reward, accuracy" in block
    run = open_run(run_path)
    names_f = kinds.of(run.describe("format")).labels(run.describe("format"), "formats")
    dom = int(run.read("format/dominant")[1][-1])
    share = run.read("format/dominant_share")[1][-1]
    assert f"final dominant format: {names_f[dom]} ({fmt_num(share)})" in block
