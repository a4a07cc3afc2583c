"""LiveDisplay: nesting under another Live that restarts, and owning the terminal with redirected output."""

from __future__ import annotations

import io
import logging
import re
import sys

from rich.console import Console
from rich.live import Live

from probes.console.display import LiveDisplay, live_stack
from probes.console.terminal import ScreenLines, StreamProxy


def tty() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=60, color_system=None)


def screen_of(console: Console) -> list[str]:
    s = ScreenLines(lambda line: None, max_up=10**9)
    s.write(console.file.getvalue())  # type: ignore[attr-defined]
    return s.status()


def test_nested_display_follows_a_restarting_bar_and_cleans_up() -> None:
    console = tty()
    bar = Live("bar frame 1", console=console, auto_refresh=False)
    bar.start()
    display = LiveDisplay(lambda: "dashboard", console=console, nested=True)
    display.start()
    assert live_stack(console) == [bar, display._live]
    bar.refresh()
    assert screen_of(console) == ["bar frame 1", "dashboard"]  # drawn inside the bar's display

    bar.stop()  # rich pops the *last* Live: ours, and leaves the stopped bar on the stack
    assert live_stack(console) == [bar]
    console.clear_live()  # what RichProgressBar does before it starts again
    bar2 = Live("bar frame 2", console=console, auto_refresh=False)
    bar2.start()
    assert display.attach() and live_stack(console) == [bar2, display._live]

    bar2.stop()  # pops ours again, bar2 stays behind stopped
    display.stop()
    assert live_stack(console) == []
    assert screen_of(console)[-2:] == ["bar frame 2", "dashboard"]


def test_nested_display_waits_for_a_running_live() -> None:
    console = tty()
    display = LiveDisplay(lambda: "dashboard", console=console, nested=True)
    display.start()
    assert not display.attach() and live_stack(console) == []
    display.stop(leave=False)
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_own_display_keeps_a_bar_line_live_and_prints_lines_above() -> None:
    console = tty()
    stdout, stderr = sys.stdout, sys.stderr
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("probes.test.display")
    logger.addHandler(handler)
    try:
        display = LiveDisplay(lambda: "dashboard", console=console, nested=False, refresh_per_second=30)
        display.start()
        assert isinstance(sys.stdout, StreamProxy) and handler.stream is sys.stderr
        print("a printed line")
        print("another")
        sys.stdout.write("\rEpoch 0:  50%")
        assert display.screen.status() == ["another", "Epoch 0:  50%"]
        logger.warning("a log line")
        display.stop()
    finally:
        logger.removeHandler(handler)
    assert (sys.stdout, sys.stderr) == (stdout, stderr) and handler.stream is stderr
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")
    final = [re.sub(r"\s+$", "", row) for row in screen_of(console)]
    assert final == ["a printed line", "another", "Epoch 0:  50%a log line", "dashboard"]
