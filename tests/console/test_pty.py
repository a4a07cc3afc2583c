"""Training in a pseudo-terminal with the Rich and the TQDM progress bar next to LiveConsole.

One interpreter runs both trainings in turn; the output of each is fed to ``pyte``, a VT100
terminal emulator independent of this library (cursor movement, erasing, scrolling, autowrap at
the terminal width), to get the final screen plus everything that scrolled off its top: a stale
frame left behind by a bad redraw, or a line wrapped by the terminal, would show up there.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte", reason="the pty tests need the dev extra's terminal emulator: pip install pyte")

SCRIPT = Path(__file__).with_name("tiny_run.py")
COLS, ROWS = 100, 40
STEPS = 10
CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def run_in_pty(bars: str, timeout: float = 150.0) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(SCRIPT), bars, str(STEPS), "--sleep", "0.12"]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(), out.decode("utf-8", "replace")


def final_screen(raw: str) -> list[str]:
    """The terminal's rows after ``raw``: the scrollback, then the visible screen, trailing blank
    rows dropped."""
    screen = pyte.HistoryScreen(COLS, ROWS, history=100_000, ratio=0.001)
    pyte.Stream(screen).feed(raw)
    rows = ["".join(line[x].data for x in range(COLS)).rstrip() for line in screen.history.top]
    rows += [line.rstrip() for line in screen.display]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def test_the_emulator_wraps_scrolls_and_erases() -> None:
    """The reference itself: autowrap at the width, scrollback kept, cursor-up + erase-line redraws."""
    text = "x" * (COLS + 5) + "\r\n" + "".join(f"line {i}\r\n" for i in range(ROWS)) + "\x1b[2A\x1b[2Kredrawn"
    rows = final_screen(text)
    assert rows[0] == "x" * COLS and rows[1] == "xxxxx"
    assert rows[-2] == "redrawn" and rows[-3] == f"line {ROWS - 3}" and rows[-1] == f"line {ROWS - 1}"


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[int, str]]:
    rc, raw = run_in_pty("rich,tqdm")
    parts = re.split(r"RUN START (rich|tqdm)\r?\n", raw)
    return {bar: (rc, text) for bar, text in zip(parts[1::2], parts[2::2])}


@pytest.mark.parametrize("bar", ["rich", "tqdm"])
def test_bar_and_dashboard_share_the_terminal(runs: dict[str, tuple[int, str]], bar: str) -> None:
    rc, raw = runs[bar]
    screen = final_screen(raw)
    assert rc == 0, "\n".join(screen[-30:])
    assert "Traceback" not in raw and "LiveError" not in raw
    assert screen[-1] == "RUN FINISHED"
    headers = [i for i, row in enumerate(screen) if row.startswith("probes  step")]
    assert len(headers) == 1, "a stale dashboard frame was left on screen:\n" + "\n".join(screen)
    assert screen[headers[0]].startswith(f"probes  step {STEPS}  epoch ")
    assert screen[headers[0] + 1].startswith("╭─ keyword · top 6 of 6 pairs by change")
    # the dashboard's rows are whole: none wrapped by the terminal onto a second row
    bottom = max(i for i, row in enumerate(screen) if row.startswith("╰"))
    assert all(row[:1] in ("╭", "│", "╰") for row in screen[headers[0] + 1 : bottom + 1]), "\n".join(screen)
    bars = [i for i, row in enumerate(screen) if row.startswith("Epoch 0")]
    if bar == "rich":  # the bar's last frame stays at the bottom, the final dashboard above it
        assert bars == [len(screen) - 2] and f"{STEPS}/{STEPS}" in screen[bars[0]]
    else:  # TQDM's finished bar is committed above the final dashboard
        assert bars and bars[-1] < headers[0] and "100%" in screen[bars[-1]]
    drawn = {int(s) for s in re.findall(r"probes  step (\d+)", CODES.sub("", raw))}
    assert drawn & set(range(1, STEPS)), "the dashboard was not drawn while training ran"
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")  # the cursor is visible at the end
