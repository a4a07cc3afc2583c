"""``ConsoleSession``: a dashboard shown while a loop that is not a Lightning Trainer trains.

The Lightning ``LiveConsole`` callback draws through Lightning's progress bar when there is one;
other drivers (the Hugging Face ``Trainer`` adapter, a plain loop) use this: a live display of
its own on a terminal, or one plain summary line every ``plain_every_n_steps`` steps otherwise.
"""

from __future__ import annotations

from typing import Literal, Optional

from rich import get_console
from rich.console import Console
from rich.text import Text

from probes.console.dashboard import Dashboard
from probes.console.display import LiveDisplay
from probes.console.plain import print_alerts

__all__ = ["ConsoleSession"]

Mode = Literal["auto", "live", "plain"]


class ConsoleSession:
    """Show ``dashboard`` from :meth:`start` to :meth:`stop`.

    Args:
        dashboard: the dashboard the probes write to (subscribe it as a record sink).
        mode: ``"auto"`` (live on a terminal, plain lines otherwise), ``"live"`` or ``"plain"``.
        refresh_per_second: redraw cap of the live display.
        plain_every_n_steps: optimizer steps between plain summary lines.
        console: the rich console to draw on (default: rich's global console).
        leave: print the final dashboard when the live display stops.

    Raises:
        ValueError: an unknown ``mode`` or a step interval below 1.
    """

    def __init__(
        self,
        dashboard: Dashboard,
        *,
        mode: Mode = "auto",
        refresh_per_second: float = 4.0,
        plain_every_n_steps: int = 50,
        console: Optional[Console] = None,
        leave: bool = True,
    ) -> None:
        if mode not in ("auto", "live", "plain"):
            raise ValueError(f"Expected `mode` to be 'auto', 'live' or 'plain', got {mode!r}.")
        if not isinstance(plain_every_n_steps, int) or isinstance(plain_every_n_steps, bool) or plain_every_n_steps < 1:
            raise ValueError(f"Expected `plain_every_n_steps` to be a positive int, got {plain_every_n_steps!r}.")
        self.dashboard = dashboard
        self.mode = mode
        self.refresh_per_second = float(refresh_per_second)
        self.plain_every_n_steps = plain_every_n_steps
        self.leave = leave
        self._console = console
        self._display: Optional[LiveDisplay] = None
        self._plain: Optional[Console] = None
        self._next_line = plain_every_n_steps
        self._printed_seq = 0

    def start(self) -> None:
        """Start the live display (on a terminal) or the plain lines."""
        console = self._console or get_console()
        live = self.mode == "live" or (self.mode == "auto" and console.is_terminal and not console.is_dumb_terminal)
        if live:
            self._display = LiveDisplay(
                lambda: self.dashboard, console=console, nested=False, refresh_per_second=self.refresh_per_second
            )
            self._display.start()
        else:
            self._plain = console

    def progress(self, step: int, epoch: int) -> None:
        """The loop reached optimizer step ``step``: update the header, print a plain line when due."""
        self.dashboard.update_progress(step, epoch)
        if self._plain is not None and step >= self._next_line:
            n = self.plain_every_n_steps
            self._next_line = (step // n + 1) * n
            self._print_line()

    def stop(self, reason: Optional[str] = None) -> None:
        """Stop the display and show the final state once (``reason``: an alert, e.g. why training stopped)."""
        if reason:
            self.dashboard.alert(f"training stopped: {reason}", key="training-stopped")
        display, self._display = self._display, None
        plain, self._plain = self._plain, None
        self.dashboard.flush()
        if display is not None:
            display.stop(leave=self.leave)
        if plain is not None:
            self._print_line(plain)

    def _print_line(self, console: Optional[Console] = None) -> None:
        out = console or self._plain
        if out is None:
            return
        out.print(Text(self.dashboard.summary_line()), soft_wrap=True, highlight=False)
        self._printed_seq = print_alerts(out, self.dashboard.alerts, self._printed_seq)
