"""Keeping other writers' output readable under a live display.

While the dashboard owns the terminal, ``sys.stdout`` and ``sys.stderr`` are replaced by
:class:`StreamProxy` objects that feed one :class:`ScreenLines`: a small model of what a terminal
would show for text written with carriage returns, newlines and cursor-up sequences. Lines that can
no longer be redrawn are *committed* (printed above the live display); the rest, such as a TQDM
progress bar that keeps rewriting its line, are *status rows* drawn as part of the live display.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

__all__ = ["ScreenLines", "StatusRows", "StreamProxy"]

_TOKENS = re.compile(r"(\r|\n|\x1b\[[0-9;?]*[A-Za-z])")
_UP = re.compile(r"\x1b\[(\d*)A")


class ScreenLines:
    """What a terminal would show for written text, split into committed lines and status rows.

    Handles ``\\r`` (column 0), ``\\n`` (next row, column 0), ``ESC[nA`` (cursor up, as TQDM's
    nested bars use) and ``ESC[nK`` (erase in line); other escape sequences are dropped. A row
    is committed once the cursor is below it by more than the largest upward move seen so far, so
    a bar's row stays live while plain ``print`` output is committed a line or two later.

    Args:
        on_commit: called with each committed line, outside the internal lock.
        max_up: upward moves to expect before any is seen (1 covers TQDM's validation bar,
            which first moves down a row and only then back up).
    """

    def __init__(self, on_commit: Callable[[str], None], *, max_up: int = 1) -> None:
        self.on_commit = on_commit
        self._lock = threading.Lock()
        self._rows: list[str] = [""]
        self._row = 0
        self._col = 0
        self._max_up = max_up

    def write(self, text: str) -> None:
        """Apply ``text`` to the model; commit what can no longer change."""
        with self._lock:
            for token in _TOKENS.split(text):
                if token:
                    self._apply(token)
            done = self._take_committed()
        for line in done:
            self.on_commit(line)

    def status(self) -> list[str]:
        """The live rows that hold text (trailing spaces removed)."""
        with self._lock:
            return [r.rstrip() for r in self._rows if r.strip()]

    def close(self) -> None:
        """Commit every row that holds text (when the display stops)."""
        with self._lock:
            done = [r.rstrip() for r in self._rows if r.strip()]
            self._rows, self._row, self._col = [""], 0, 0
        for line in done:
            self.on_commit(line)

    def _apply(self, token: str) -> None:
        if token == "\r":
            self._col = 0
        elif token == "\n":
            self._row += 1
            self._col = 0
            if self._row == len(self._rows):
                self._rows.append("")
        elif token.startswith("\x1b["):
            up = _UP.fullmatch(token)
            if up is not None:
                n = int(up.group(1) or 1)
                self._max_up = max(self._max_up, n if self._row >= n else self._row)
                self._row = max(0, self._row - n)
            elif token[-1] == "K":  # erase in line: to the end (0, default), to the cursor (1), all (2)
                arg = token[2:-1] or "0"
                row = self._rows[self._row]
                if arg == "2":
                    self._rows[self._row] = ""
                elif arg == "1":
                    self._rows[self._row] = " " * self._col + row[self._col :]
                else:
                    self._rows[self._row] = row[: self._col]
        else:
            row = self._rows[self._row].ljust(self._col)
            self._rows[self._row] = row[: self._col] + token + row[self._col + len(token) :]
            self._col += len(token)

    def _take_committed(self) -> list[str]:
        keep_from = max(0, self._row - self._max_up)
        if keep_from == 0:
            return []
        done, self._rows = self._rows[:keep_from], self._rows[keep_from:]
        self._row -= keep_from
        return [r.rstrip() for r in done]


class StatusRows:
    """Renders the live status rows of a :class:`ScreenLines` (nothing when there are none)."""

    def __init__(self, screen: ScreenLines) -> None:
        self.screen = screen

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for row in self.screen.status():
            yield Text.from_ansi(row, no_wrap=True, overflow="ellipsis")


class StreamProxy(io.TextIOBase):
    """A text stream that writes into a :class:`ScreenLines` instead of the terminal.

    Rich consoles unwrap it (``rich_proxied_file``), so the live display itself still writes to
    the real stream. ``isatty`` and ``fileno`` answer for the real stream, so terminal-size queries
    (TQDM's ``dynamic_ncols``) keep working.

    Args:
        screen: the shared screen model.
        file: the stream being replaced.
    """

    def __init__(self, screen: ScreenLines, file: IO[str]) -> None:
        super().__init__()
        self._screen = screen
        self._file = file

    @property
    def rich_proxied_file(self) -> IO[str]:
        """The real stream (rich writes there directly)."""
        return self._file

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._file, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._screen.write(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(getattr(self._file, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._file.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)
