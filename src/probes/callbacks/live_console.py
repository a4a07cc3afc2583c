"""LiveConsole: the probe dashboard in the terminal while training runs."""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from rich import get_console
from rich.console import Console
from rich.text import Text
from typing_extensions import override

from probes.console.dashboard import AlertLevel, Dashboard
from probes.console.display import LiveDisplay, live_stack
from probes.console.plain import print_alerts
from probes.integrations.lightning import ProbeCallback

__all__ = ["LiveConsole"]

Mode = Literal["auto", "live", "plain"]


def _is_terminal(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal


class LiveConsole(Callback):
    """Shows every probe's records on a live :class:`~probes.console.Dashboard` during ``fit``.

    In ``setup`` it subscribes the dashboard to every :class:`~probes.integrations.lightning.ProbeCallback`
    in ``trainer.callbacks``. On a terminal it draws the dashboard live: inside Lightning's
    ``RichProgressBar`` display when that bar is enabled (the bar's refresh thread draws both), or
    in a Live of its own refreshed at most ``refresh_per_second`` times per second from a
    background thread (a TQDM bar then keeps redrawing its line above the dashboard). Records are
    only staged on the training thread; host copies and drawing happen in the refreshing thread.
    When the output is not a terminal it writes one plain summary line every
    ``plain_every_n_steps`` optimizer steps, plus each new alert, and no escape codes.

    Only global rank zero subscribes and draws; other ranks do nothing. The display stops in
    ``teardown`` and ``on_exception`` (which Lightning also calls on KeyboardInterrupt), restoring
    ``sys.stdout``/``sys.stderr`` and the cursor, and prints the final dashboard once (``leave``).

    Args:
        dashboard: the dashboard to feed and show; a new ``Dashboard()`` when None.
        mode: ``"auto"`` (live on a terminal, plain otherwise), ``"live"`` or ``"plain"``.
        refresh_per_second: redraw cap of the dashboard's own Live, in (0, 30].
        plain_every_n_steps: optimizer steps between plain summary lines.
        console: the rich console to draw on (default: rich's global console). Under an enabled
            ``RichProgressBar`` the global console is always used, since the bar draws there.
        leave: print the final dashboard when the display stops.

    Raises:
        ValueError: on an argument out of range (named in the message).

    Example::

        trainer = Trainer(callbacks=[KeywordProbe(pairs, tokenizer), LiveConsole()])
    """

    def __init__(
        self,
        dashboard: Optional[Dashboard] = None,
        *,
        mode: Mode = "auto",
        refresh_per_second: float = 4.0,
        plain_every_n_steps: int = 50,
        console: Optional[Console] = None,
        leave: bool = True,
    ) -> None:
        if dashboard is not None and not isinstance(dashboard, Dashboard):
            raise ValueError(f"Expected `dashboard` to be a probes.console.Dashboard, got {type(dashboard).__name__}.")
        if mode not in ("auto", "live", "plain"):
            raise ValueError(f"Expected `mode` to be 'auto', 'live' or 'plain', got {mode!r}.")
        if not (
            isinstance(refresh_per_second, (int, float))
            and not isinstance(refresh_per_second, bool)
            and math.isfinite(refresh_per_second)
            and 0 < refresh_per_second <= 30
        ):
            raise ValueError(f"Expected `refresh_per_second` in (0, 30], got {refresh_per_second!r}.")
        if not isinstance(plain_every_n_steps, int) or isinstance(plain_every_n_steps, bool) or plain_every_n_steps < 1:
            raise ValueError(f"Expected `plain_every_n_steps` to be a positive int, got {plain_every_n_steps!r}.")
        if console is not None and not isinstance(console, Console):
            raise ValueError(f"Expected `console` to be a rich.console.Console, got {type(console).__name__}.")
        self.dashboard = dashboard if dashboard is not None else Dashboard()
        self.mode = mode
        self.refresh_per_second = float(refresh_per_second)
        self.plain_every_n_steps = plain_every_n_steps
        self.leave = leave
        self._console = console
        self._display: Optional[LiveDisplay] = None
        self._plain: Optional[Console] = None
        self._next_line = plain_every_n_steps
        self._printed_seq = 0
        self._active = False
        self._await_bar = False

    @staticmethod
    def find(trainer: pl.Trainer) -> Optional[LiveConsole]:
        """The first LiveConsole in ``trainer.callbacks``, or None (for callbacks that raise alerts)."""
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, LiveConsole):
                return cb
        return None

    @property
    def is_live(self) -> bool:
        """True while the dashboard is drawn live on a terminal."""
        return self._display is not None and self._display.started

    def alert(self, text: str, *, step: Optional[int] = None, level: AlertLevel = "error") -> None:
        """Show an alert (e.g. a failed expectation); in plain mode it is also printed at once."""
        self.dashboard.alert(text, step=step, level=level)
        if self._plain is not None:
            self._print_new_alerts()

    # -- hooks --------------------------------------------------------------------------------

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        self._active = True
        for probe in ProbeCallback.probe_callbacks(trainer):
            probe.subscribe(self.dashboard)
        bar = trainer.progress_bar_callback
        if self.mode != "plain" and isinstance(bar, RichProgressBar) and bar.is_enabled:
            # the bar (re)configures rich's global console when it starts, after this hook:
            # decide between nested live and plain output once its display is up (see _progress)
            self._await_bar = True
            return
        console = self._console or get_console()
        if self.mode == "live" or (self.mode == "auto" and _is_terminal(console)):
            self._start_display(console, nested=False)
        else:
            self._start_plain(console)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._progress(trainer)
        if self._plain is not None and trainer.global_step >= self._next_line:
            n = self.plain_every_n_steps
            self._next_line = (trainer.global_step // n + 1) * n
            self._print_line()

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress(trainer)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            if self._active:
                if isinstance(exception, KeyboardInterrupt):
                    reason = "interrupted"
                else:
                    reason = f"{type(exception).__name__}: {exception}"
                    reason = reason if len(reason) <= 160 else reason[:159] + "…"
                self.dashboard.alert(f"training stopped: {reason}", key="training-stopped")
            self._stop()
        except Exception as err:  # never mask the training error or skip other callbacks' cleanup
            rank_zero_warn(f"LiveConsole could not stop cleanly after {type(exception).__name__}: {err!r}")

    # -- internals ----------------------------------------------------------------------------

    def _progress(self, trainer: pl.Trainer) -> None:
        if not self._active:
            return
        self.dashboard.update_progress(trainer.global_step, ProbeCallback.reading_epoch(trainer))
        if self._await_bar and live_stack(get_console()):
            self._await_bar = False
            console = get_console()
            if self.mode == "live" or _is_terminal(console):
                self._start_display(console, nested=True)
            else:
                self._start_plain(self._console or console)
        if self._display is not None:
            self._display.attach()

    def _start_display(self, console: Console, *, nested: bool) -> None:
        self._display = LiveDisplay(
            lambda: self.dashboard, console=console, nested=nested, refresh_per_second=self.refresh_per_second
        )
        self._display.start()

    def _start_plain(self, console: Console) -> None:
        self._plain = console
        self._next_line = self.plain_every_n_steps

    def _stop(self) -> None:
        if not self._active:
            return
        self._active = False
        display, self._display = self._display, None
        plain, self._plain = self._plain, None
        if self._await_bar:  # the bar never started: show the final state once, as the console allows
            self._await_bar = False
            console = self._console or get_console()
            if not _is_terminal(console):
                plain = console
            elif self.leave:
                self.dashboard.flush()
                console.print(self.dashboard)
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
        self._print_new_alerts(out)

    def _print_new_alerts(self, console: Optional[Console] = None) -> None:
        out = console or self._plain
        if out is None:
            return
        self._printed_seq = print_alerts(out, self.dashboard.alerts, self._printed_seq)
