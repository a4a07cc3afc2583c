"""Formatting, sparklines, bars and the decimating history."""

from __future__ import annotations

import math

import pytest

from probes.console import bar_text, numbers, sparkline_text
from probes.console.history import History
from probes.console.numbers import fmt_duration, fmt_prob, fmt_rate, fmt_ratio, fmt_share


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.5, "0.500"),
        (0.0099999998, "0.0100"),
        (0.04, "0.0400"),
        (4.5e-5, "4.5e-05"),
        (0.0, "0.000"),
        (math.nan, "nan"),
        (math.inf, "inf"),
    ],
)
def test_fmt_prob(p: float, text: str) -> None:
    assert fmt_prob(p) == text


@pytest.mark.parametrize(
    ("r", "text"),
    [(3.2149, "×3.21"), (100.0, "×100"), (999.99, "×1.0e+03"), (0.2, "×0.2"), (0.004, "×4.0e-03"), (0.0, "×0")],
)
def test_fmt_ratio(r: float, text: str) -> None:
    assert fmt_ratio(r) == text


def test_fmt_misc() -> None:
    assert fmt_share(0.96875) == "96.9%"
    assert fmt_rate(None) == "—"
    assert fmt_rate(12.34) == "12.3"
    assert fmt_rate(1234.5) == "1234"
    assert fmt_duration(3725.9) == "1:02:05"
    assert fmt_duration(None) == "—"


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline_text([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline_text([5.0, 5.0, 5.0], 8) == "▁▁▁"
    assert sparkline_text([1.0, math.nan, 3.0, math.inf], 8) == "▁ █ "
    assert sparkline_text([], 8) == ""


def test_sparkline_resamples_keeping_both_ends() -> None:
    values = list(range(9))  # width 5 samples indices 0, 2, 4, 6, 8: levels floor(8 v / 8), top clamped
    assert sparkline_text(values, 5) == "▁▃▅▇█"
    assert sparkline_text(values, 1) == "▁"


def test_bar_text_in_eighths() -> None:
    assert bar_text(0.5, 4) == "██  "
    assert bar_text(0.96875, 40) == "█" * 38 + "▊ "
    assert bar_text(1.7, 3) == "███"
    assert bar_text(math.nan, 3) == "   "


@pytest.mark.parametrize("fn", [sparkline_text, bar_text])
def test_width_must_be_positive(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="Expected `width` to be at least 1, got 0"):
        fn([1.0] if fn is sparkline_text else 0.5, 0)


def test_history_keeps_the_whole_run_in_bounded_memory() -> None:
    h: History[int] = History(4)
    seen = []
    for i in range(11):
        h.append(i, 10 * i)
        seen.append(h.series()[0])
    assert seen == [
        [0],
        [0, 1],
        [0, 1, 2],
        [0, 2, 3],  # full: every other point dropped, the latest still shown
        [0, 2, 4],
        [0, 2, 4, 5],
        [0, 4, 6],
        [0, 4, 7],
        [0, 4, 8],
        [0, 4, 8, 9],
        [0, 4, 8, 10],
    ]
    assert h.series()[1] == [0, 40, 80, 100]
    assert len(h.values) < 4


def test_history_capacity_is_validated() -> None:
    with pytest.raises(ValueError, match=r"Expected `history` to be an int >= 2, got 1"):
        History(1)


def test_one_formatter_for_the_console_the_cli_and_the_tests() -> None:
    from probes.cli import common
    from probes.testing import tables

    assert common.fmt_num is numbers.fmt_num is tables.fmt and common.table is numbers.table
    assert common.printable is numbers.printable and tables.sample_rows is numbers.sample_rows
    # numbers right-aligned, text left-aligned, the marked row starts with ">"
    assert numbers.table(["step", "p", "name"], [[0, 0.5, "a"], [10, 1e-5, "bb"]], mark=1).splitlines() == [
        "  step          p  name",
        "     0        0.5  a",
        ">   10  1.000e-05  bb",
    ]
    assert tables.format_table(["step", "p"], [[1, 0.25]], mark=0) == "  step     p\n>    1  0.25"
    assert [numbers.fmt_num(x) for x in (None, True, 3, 12345.6, 1e-4, "a\nb")] == [
        "-", "yes", "3", "12346", "1.000e-04", "a\\nb"
    ]
