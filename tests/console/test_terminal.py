"""ScreenLines: what a terminal shows for TQDM-style output, split into committed and live rows."""

from __future__ import annotations

import io
import sys

from rich.console import Console

from probes.console.terminal import ScreenLines, StreamProxy


def test_plain_lines_are_committed_and_a_bar_stays_live() -> None:
    out: list[str] = []
    s = ScreenLines(out.append)
    s.write("hello\n")
    s.write("world\n")
    assert out == ["hello"] and s.status() == ["world"]
    s.write("\rEpoch 0:  10%")
    assert s.status() == ["world", "Epoch 0:  10%"]
    s.write("\rEpoch 0:  20%")
    assert s.status() == ["world", "Epoch 0:  20%"]


def test_tqdm_nested_validation_bar_and_leave() -> None:
    out: list[str] = []
    s = ScreenLines(out.append)
    s.write("\rEpoch 0:  50%|#####     |")
    # a validation bar at position 1: move down, draw, move back up (tqdm's moveto)
    s.write("\n")
    s.write("\rValidation: 1/4")
    s.write("\x1b[A")
    assert s.status() == ["Epoch 0:  50%|#####     |", "Validation: 1/4"]
    # validation bar closed without leave: blanked in place
    s.write("\n")
    s.write("\r" + " " * 15)
    s.write("\x1b[A")
    s.write("\rEpoch 0: 100%|##########|")
    assert s.status() == ["Epoch 0: 100%|##########|"]
    # the train bar closes with leave=True: redraw and newline
    s.write("\rEpoch 0: 100%|##########|\n")
    s.write("done\n")
    assert out == ["Epoch 0: 100%|##########|"]
    s.close()
    assert out == ["Epoch 0: 100%|##########|", "done"]


def test_erase_in_line_and_overwrite() -> None:
    s = ScreenLines(lambda line: None, max_up=10)
    s.write("abcdef\rXY")
    assert s.status() == ["XYcdef"]
    s.write("\x1b[K")
    assert s.status() == ["XY"]
    s.write("\x1b[2K\x1b[1;31mred\x1b[0m")
    assert s.status() == ["  red"]


def test_stream_proxy_unwraps_for_rich_and_forwards_terminal_queries() -> None:
    real = io.StringIO()
    out: list[str] = []
    proxy = StreamProxy(ScreenLines(out.append, max_up=0), real)
    assert proxy.write("a line\n") == 7
    assert out == ["a line"] and real.getvalue() == ""
    assert proxy.rich_proxied_file is real
    assert proxy.isatty() is False
    console = Console(file=proxy, width=20, color_system=None)
    console.print("direct")  # rich writes through to the real stream
    assert real.getvalue() == "direct\n"
    assert sys.stdout is not proxy
