"""replay and follow feed the same Dashboard from recorded records."""

from __future__ import annotations

import io
import math
import sys

import pytest
from rich.console import Console

from probes.console import Dashboard, by_step, follow, replay
from probes.core.records import Record

from ._records import DESCRIBES, all_records, format_record, keyword_record, priming_record


def plain_console(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def tty_console(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system="standard")


def test_by_step_merges_per_source_streams() -> None:
    kw = [keyword_record(s) for s in range(3)]
    fm = [format_record(s) for s in range(3)]
    merged = [(r.step, r.source) for r in by_step(kw, fm)]
    assert merged == [(0, "keyword"), (0, "format"), (1, "keyword"), (1, "format"), (2, "keyword"), (2, "format")]


def test_replay_off_terminal_prints_the_final_dashboard_once() -> None:
    console = plain_console()
    sleeps: list[float] = []
    d = replay(all_records(), DESCRIBES, console=console, speed=4, sleep=sleeps.append)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert sleeps == []
    assert "\x1b" not in text
    assert text.splitlines()[0] == "probes replay  step 2  epoch 0  steps/s —  elapsed —"
    assert text.count("╭─ keyword · top 4 of 4 pairs by change") == 1
    assert d.summary_line().startswith("probes replay step 2 epoch 0 steps/s — elapsed — | keyword: top sand ×100")


def test_replay_on_a_terminal_paces_by_step_and_restores_streams() -> None:
    console = tty_console()
    sleeps: list[float] = []
    stdout, stderr = sys.stdout, sys.stderr
    replay(all_records(), DESCRIBES, console=console, speed=4, sleep=sleeps.append)
    assert sleeps == [0.25, 0.25, 0.25]  # one pause per distinct step
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[?25l" in text and text.rstrip().endswith("\x1b[?25h")  # cursor hidden, then shown again
    assert "COLLAPSED to boxed (96.9%) since step 2" in text


def test_replay_at_infinite_speed_does_not_draw_live() -> None:
    console = tty_console()
    replay(all_records(), DESCRIBES, console=console, speed=math.inf, sleep=pytest.fail)
    assert "\x1b[?25l" not in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("speed", [0, -1, "fast", True])
def test_replay_speed_is_validated(speed: object) -> None:
    with pytest.raises(ValueError, match="Expected `speed` to be a positive number of readings per second"):
        replay([], DESCRIBES, console=plain_console(), speed=speed)  # type: ignore[arg-type]


def test_replay_needs_every_source_described() -> None:
    with pytest.raises(KeyError, match="unregistered source 'priming'"):
        replay([priming_record(0)], {"keyword": DESCRIBES["keyword"]}, console=plain_console(), speed=math.inf)
    with pytest.raises(ValueError, match="Expected `describes` to map source name -> describe"):
        replay([], [DESCRIBES], console=plain_console())  # type: ignore[arg-type]


def test_follow_skips_seen_records_and_prints_a_line_per_new_batch() -> None:
    records = all_records()
    batches = [records[:3], records[:6], records[:6], records]  # each poll returns everything so far
    calls: list[int] = []

    def poll() -> tuple[dict, list[Record]]:
        calls.append(1)
        return DESCRIBES, batches[len(calls) - 1]

    console = plain_console(width=400)
    d = follow(poll, console=console, until=lambda: len(calls) == len(batches), sleep=lambda s: None)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert [line.split(" | ")[0] for line in lines] == [
        "probes watch step 0 epoch 0 steps/s — elapsed —",
        "probes watch step 1 epoch 0 steps/s — elapsed —",
        "probes watch step 2 epoch 0 steps/s — elapsed —",
    ]  # the third poll brought nothing new
    assert d.states["keyword"].n_records == 3


def test_follow_stops_when_idle_and_on_ctrl_c() -> None:
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    d = follow(
        lambda: (DESCRIBES, []), console=plain_console(), interval=2, idle_timeout=5, sleep=sleep, clock=lambda: t[0]
    )
    assert t[0] == 6.0 and isinstance(d, Dashboard)

    def interrupted() -> tuple[dict, list[Record]]:
        raise KeyboardInterrupt

    follow(interrupted, console=tty_console(), sleep=pytest.fail)
    assert type(sys.stdout).__name__ != "StreamProxy"


def test_follow_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="Expected `interval` to be a positive number of seconds, got 0."):
        follow(lambda: ({}, []), interval=0)
    with pytest.raises(ValueError, match="Expected `idle_timeout` to be a positive number of seconds or None, got -1."):
        follow(lambda: ({}, []), idle_timeout=-1)
