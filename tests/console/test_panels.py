"""Exact text of every panel for the fixed records of conftest.py (width 100, no colour)."""

from __future__ import annotations

import math

import pytest
import torch

from probes.console import AlertsPanel, Dashboard, FormatPanel, KeywordPanel, PrimingPanel
from probes.core.records import Record

from ._records import DESCRIBES, FakeClock, keyword_record, render


def panel_text(renderable: object, width: int = 100) -> list[str]:
    return render(renderable, width).splitlines()


def test_header(dashboard: Dashboard) -> None:
    # steps 0, 1, 2 arrived at t = 0, 2, 4: 2 steps in 4 s; the clock reads 4 s since the first record
    assert panel_text(dashboard.header()) == ["probes  step 2  epoch 0  steps/s 0.5  elapsed 0:00:04"]


def test_header_before_any_record() -> None:
    assert panel_text(Dashboard(clock=FakeClock()).header()) == ["probes  waiting for the first reading…"]


def test_keyword_panel(dashboard: Dashboard) -> None:
    # change since step 0: sand x100, honey x0.2, snow x2, the long one x1 (sorted by |log ratio|)
    assert panel_text(KeywordPanel(dashboard.states["keyword"], top_n=8)) == [
        "╭─ keyword · top 4 of 4 pairs by change ───────────────────────────────────────────────────────────╮",
        "│ pair                                    p_seq   step 0  change  trend                            │",
        "│ sand                                   0.0100  1.0e-04    ×100  ▁▅█                              │",
        "│ honey                                   0.100    0.500    ×0.2  █▅▁                              │",
        "│ snow                                   0.0400   0.0200      ×2  ▁▁█                              │",
        "│ a-pair-with-a-rather-long-name-to-cut   0.250    0.250      ×1  ▁▁▁                              │",
        "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    ]


def test_keyword_panel_top_n_and_p_first(clock: FakeClock) -> None:
    d = Dashboard(clock=clock, keyword_metric="p_first")
    d.register_source("keyword", DESCRIBES["keyword"])
    for step in range(3):
        d.write(keyword_record(step))
    text = panel_text(KeywordPanel(d.states["keyword"], top_n=2), 60)
    assert text == [
        "╭─ keyword · top 2 of 4 pairs by change ───────────────────╮",
        "│ pair    p_first   step 0  change  trend                  │",
        "│ sand     0.0100  1.0e-04    ×100  ▁▅█                    │",
        "│ honey     0.100    0.500    ×0.2  █▅▁                    │",
        "╰──────────────────────────────────────────────────────────╯",
    ]


def test_priming_panel(dashboard: Dashboard) -> None:
    # vermilion-sand: p 1e-4 -> 1e-2 (s_mem x100), s_prime 2**2, surprising; "late" has no baseline yet
    assert panel_text(PrimingPanel(dashboard.states["priming"], max_rows=6, threshold=1e-3)) == [
        "╭─ priming · surprising: p before < 1e-03 ─────────────────────────────────────────────────────────╮",
        "│ sample          p before   p now  s_mem  s_prime  exp  surprise  trend                           │",
        "│ vermilion-sand   1.0e-04  0.0100   ×100       ×4    2  yes       ▁▅█                             │",
        "│ blue-honey        0.0500  0.0500     ×1     ×0.5    2  no        ▁▁▁                             │",
        "│ late                   —   0.300      —        —    0  no                                        │",
        "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    ]


def test_priming_panel_caps_rows(dashboard: Dashboard) -> None:
    text = panel_text(PrimingPanel(dashboard.states["priming"], max_rows=1, threshold=1e-3), 80)
    assert text[2].startswith("│ vermilion-sand")
    assert text[3] == "│ +2 more samples                                                              │"
    assert len(text) == 5


def test_format_panel(dashboard: Dashboard) -> None:
    # dist [31/32, 1/64, 1/64, 0]: H = 0.2319 bits, norm H/2, 2**H = 1.174 formats; the bar is 40 cells wide
    assert panel_text(FormatPanel(dashboard.states["format"], max_rows=6)) == [
        "╭─ format · H 0.23 bits · norm 0.12 · eff 1.17 · n 32 ─────────────────────────────────────────────╮",
        "│                             COLLAPSED to boxed (96.9%) since step 2                              │",
        "│ format     share  reward                                                                         │",
        "│ boxed      96.9%    0.75  ██████████████████████████████████████▊                                │",
        "│ answer-is   1.6%    0.50  ▋                                                                      │",
        "│ plain       1.6%       —  ▋                                                                      │",
        "│ other       0.0%       —                                                                         │",
        "│ dominant boxed 96.9%  entropy █▇▁ 2.00→0.23 bits  KL from first 1.000                            │",
        "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    ]


def test_alerts_panel(dashboard: Dashboard) -> None:
    dashboard.alert("expectation failed: p(sand) should fall", step=1)
    dashboard.alert("expectation failed: p(sand) should fall", step=2)
    assert panel_text(AlertsPanel(dashboard.alerts, max_alerts=5)) == [
        "╭─ alerts (2) ─────────────────────────────────────────────────────────────────────────────────────╮",
        "│ step 2 format: collapsed to boxed (96.9%)                                                        │",
        "│ step 2 expectation failed: p(sand) should fall (×2)                                              │",
        "╰──────────────────────────────────────────────────────────────────────────────────────────────────╯",
    ]


def test_nonfinite_probabilities_raise_one_alert_per_metric(clock: FakeClock) -> None:
    d = Dashboard(clock=clock)
    d.register_source("keyword", DESCRIBES["keyword"])
    d.write(keyword_record(0))
    p = torch.tensor([math.nan, 0.5, math.inf, 0.25])
    bad = {"p_first": p, "logp_first": p.log(), "logp_seq": p.log(), "rank": torch.tensor([1, 1, 1, 1])}
    d.write(Record(1, "keyword", bad))
    d.write(Record(2, "keyword", bad))
    assert [(a.step, a.text, a.count) for a in d.alerts] == [
        (2, "keyword: NaN/inf in p_first (sand, snow)", 2),
        (2, "keyword: NaN/inf in logp_first (sand, snow)", 2),
        (2, "keyword: NaN/inf in logp_seq (sand, snow)", 2),
    ]
    # non-finite pairs sort first in the keyword panel
    assert [row[0] for row in d.states["keyword"].top(2)] == ["sand", "snow"]


def test_malformed_record_becomes_an_alert_not_an_exception(clock: FakeClock) -> None:
    d = Dashboard(clock=clock)
    d.register_source("keyword", DESCRIBES["keyword"])
    d.write(Record(0, "keyword", {"p_first": torch.ones(4)}))  # no logp_seq
    assert [a.text for a in d.alerts] == ["keyword: unreadable record: KeyError('logp_seq')"]
    titles = [line[:12] for line in render(d, 80).splitlines() if line.startswith("╭─")]
    assert titles == ["╭─ alerts (1"]  # no keyword panel without data


@pytest.mark.parametrize("width", [80, 100, 120, 149, 150, 200])
def test_dashboard_fits_every_width(dashboard: Dashboard, width: int) -> None:
    dashboard.alert("a very long alert " * 12)
    lines = render(dashboard, width).splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0].startswith("probes  step 2")
    two_columns = any("keyword" in line and "priming" in line for line in lines)
    assert two_columns == (width >= 150)


def test_dashboard_at_80_columns(dashboard: Dashboard) -> None:
    text = render(dashboard, 80)
    assert text.splitlines()[:3] == [
        "probes  step 2  epoch 0  steps/s 0.5  elapsed 0:00:04",
        "╭─ keyword · top 4 of 4 pairs by change ───────────────────────────────────────╮",
        "│ pair                                    p_seq   step 0  change  trend        │",
    ]
    titles = [line[:12] for line in text.splitlines() if line.startswith("╭─")]
    assert titles == ["╭─ keyword ·", "╭─ priming ·", "╭─ format · ", "╭─ alerts (1"]


def test_panels_without_data_stay_out_of_the_way(clock: FakeClock) -> None:
    d = Dashboard(clock=clock)
    for source, describe in DESCRIBES.items():
        d.register_source(source, describe)
    d.register_source("custom", {"type": "SomethingElse"})
    d.write(keyword_record(0))
    d.write(Record(0, "custom", {"x": torch.zeros(1)}))
    titles = [line[:12] for line in render(d, 100).splitlines() if line.startswith("╭─")]
    assert titles == ["╭─ keyword ·"]


def test_format_panel_scored_mode_shares_of_classified(clock: FakeClock) -> None:
    # scored mode over a label space: tiny label probabilities, the rest is "everything else";
    # FormatProbe's dominant share and entropy are over the labels only (1e-5 : 3e-5 -> 25% : 75%)
    d = Dashboard(clock=clock)
    d.register_source("colour", {"type": "FormatProbe", "formats": ["red", "blue"], "other": "everything else"})
    dist = torch.tensor([1e-5, 3e-5, 1 - 4e-5], dtype=torch.float64)
    bits = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    tensors = {
        "dist": dist,
        "entropy_bits": torch.tensor(bits),
        "norm_entropy": torch.tensor(bits),
        "eff_formats": torch.tensor(2**bits),
        "dominant": torch.tensor(1),
        "dominant_share": torch.tensor(0.75),
        "unclassified": dist[2],
        "n": torch.tensor(0),
        "collapsed": torch.tensor(False),
    }
    d.write(Record(0, "colour", tensors))
    assert panel_text(FormatPanel(d.states["colour"], max_rows=6), 80) == [
        "╭─ colour · H 0.81 bits · norm 0.81 · eff 1.75 ────────────────────────────────╮",
        "│ format            share                                                      │",
        "│ red               <0.1%                                                      │",
        "│ blue              <0.1%                                                      │",
        "│ everything else  100.0%  ████████████████████████████████████████            │",
        "│ dominant blue 75.0% of classified  entropy ▁ 0.81→0.81 bits                  │",
        "╰──────────────────────────────────────────────────────────────────────────────╯",
    ]
    assert d.summary_line().endswith("| colour: blue 75.0% of classified, H 0.81 bits")


def test_a_panel_that_fails_to_draw_becomes_an_alert(dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(n: int) -> list:
        raise RuntimeError("shape changed")

    monkeypatch.setattr(dashboard.states["keyword"], "top", broken)
    titles = [line[:12] for line in render(dashboard, 100).splitlines() if line.startswith("╭─")]
    assert titles == ["╭─ priming ·", "╭─ format · ", "╭─ alerts (2"]
    assert dashboard.alerts[-1].text == "keyword: cannot draw: RuntimeError('shape changed')"
