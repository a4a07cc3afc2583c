"""Putting a renderable on the terminal live, next to whatever progress display is already there.

Two modes:

* **own**: a :class:`rich.live.Live` of our own, refreshed from a background thread at a capped
  rate. ``sys.stdout``/``sys.stderr`` (and logging handlers writing to them) go through a
  :class:`~probes.console.terminal.ScreenLines` while it runs, so a TQDM bar keeps redrawing its
  line under the dashboard and printed lines scroll above it.
* **nested**: another Live already runs on the same console (Lightning's ``RichProgressBar``).
  Rich (>= 14.1) draws every Live on a console's live stack inside the first one, so we push an
  (unstarted) Live holding the dashboard onto that stack and the progress bar's refresh thread
  draws both. ``RichProgressBar`` clears the stack whenever it (re)starts and rich pops the *last*
  Live when any stops, so :meth:`LiveDisplay.attach` is called again from training hooks and
  re-attaches when needed; :meth:`LiveDisplay.stop` removes our entry by identity and drops stopped
  Lives left behind.

In both modes, logging handlers that write to the real ``sys.stdout``/``sys.stderr`` (Lightning's
own messages, such as "`Trainer.fit` stopped") are pointed at the redirected streams while the
display runs: written straight to the terminal, a line in the middle of a live display leaves
stale lines behind.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import IO, Any, Optional

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from probes.console.terminal import ScreenLines, StatusRows, StreamProxy

__all__ = ["LiveDisplay", "live_stack"]


def live_stack(console: Console) -> list[Live]:
    """The console's stack of active Lives (rich >= 14.1; a one-element view on older rich)."""
    stack = getattr(console, "_live_stack", None)
    if isinstance(stack, list):
        return stack
    live = getattr(console, "_live", None)
    return [live] if live is not None else []


class LiveDisplay:
    """Shows ``get_renderable()`` live on ``console`` (see module docstring for the two modes).

    Args:
        get_renderable: called at each refresh, from the refreshing thread.
        console: a terminal console.
        nested: draw inside a Live that another component runs on ``console``.
        refresh_per_second: refresh cap of our own Live (own mode only).
    """

    def __init__(
        self,
        get_renderable: Callable[[], RenderableType],
        *,
        console: Console,
        nested: bool,
        refresh_per_second: float = 4.0,
    ) -> None:
        self.get_renderable = get_renderable
        self.console = console
        self.nested = nested
        self.refresh_per_second = refresh_per_second
        self.screen = ScreenLines(self._commit)
        self._live: Optional[Live] = None
        self._restore_streams: list[tuple[str, IO[str], IO[str]]] = []  # (name, original, our proxy)
        self._restore_handlers: list[tuple[logging.StreamHandler, IO[str]]] = []
        self.started = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start drawing (own mode) or try to attach (nested mode). Idempotent."""
        if self.started:
            return
        self.started = True
        if self.nested:
            self._live = Live(console=self.console, auto_refresh=False, get_renderable=self.get_renderable)
            self.attach()
            return
        self._capture_output()
        self._live = Live(
            console=self.console,
            get_renderable=self._compose,
            refresh_per_second=self.refresh_per_second,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        try:
            self._live.start(refresh=True)
        except BaseException:
            self._release_output()
            raise

    def attach(self) -> bool:
        """Nested mode: make sure our entry is on the console's live stack under a running Live.

        Returns:
            True when the dashboard is (now) part of the running display.
        """
        if not (self.nested and self.started and self._live is not None):
            return False
        stack = live_stack(self.console)
        if any(entry is self._live for entry in stack):
            return True
        if not stack or not stack[0].is_started:
            return False
        self.console.set_live(self._live)
        if not self._restore_handlers:
            proxies = {}
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                real = getattr(stream, "rich_proxied_file", None)
                if real is not None:
                    proxies[id(real)] = stream
            self._route_logging(proxies)
        return True

    def stop(self, *, leave: bool = True) -> None:
        """Stop drawing, restore streams, and (``leave``) print the final renderable once. Idempotent."""
        if not self.started:
            return
        self.started = False
        live, self._live = self._live, None
        try:
            if self.nested:
                self._detach(live)
                if leave:
                    self.console.print(self.get_renderable())
            elif live is not None:
                self.screen.close()  # commit a bar's last line above the final frame, not after it
                live.transient = not leave
                live.stop()
        finally:
            self._release_output()

    # -- internals ----------------------------------------------------------------------------

    def _compose(self) -> RenderableType:
        return Group(StatusRows(self.screen), self.get_renderable())

    def _commit(self, line: str) -> None:
        self.console.print(Text.from_ansi(line), soft_wrap=True)

    def _detach(self, live: Optional[Live]) -> None:
        stack = live_stack(self.console)
        if live is None or stack is not getattr(self.console, "_live_stack", None):
            return
        with self.console._lock:
            if stack and stack[-1] is live:
                self.console.clear_live()
            elif any(entry is live for entry in stack):
                stack.remove(live)
            # rich pops the *last* Live on stop: one that stopped while we were on top left itself behind
            stack[:] = [entry for entry in stack if entry.is_started]
            top = stack[0] if stack else None
        if top is not None:
            top.refresh()  # redraw without the dashboard before it is printed above the display

    def _capture_output(self) -> None:
        proxies: dict[int, IO[str]] = {}
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, StreamProxy) or stream is None:
                continue
            proxy = StreamProxy(self.screen, stream)
            proxies[id(stream)] = proxy
            self._restore_streams.append((name, stream, proxy))
            setattr(sys, name, proxy)
        self._route_logging(proxies)

    def _route_logging(self, proxies: dict[int, IO[str]]) -> None:
        """Point logging handlers that write to a stream in ``proxies`` (by id) at its replacement."""
        loggers: list[Any] = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for logger in loggers:
            for handler in getattr(logger, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and id(handler.stream) in proxies:
                    self._restore_handlers.append((handler, handler.stream))
                    handler.setStream(proxies[id(handler.stream)])

    def _release_output(self) -> None:
        for handler, stream in reversed(self._restore_handlers):
            handler.setStream(stream)
        self._restore_handlers.clear()
        for name, stream, proxy in reversed(self._restore_streams):
            if getattr(sys, name) is proxy:  # someone who replaced it after us restores it themselves
                setattr(sys, name, stream)
        self._restore_streams.clear()
        self.screen.close()
