"""LiveConsole in training: plain output off a terminal, and clean stops on exceptions."""

from __future__ import annotations

import io
import logging
import math
import re
import signal
import sys
import warnings
from collections.abc import Iterator

import pytest
import rich
import torch
from rich.console import Console

from probes.callbacks.live_console import LiveConsole
from probes.console import Dashboard, KeywordPanel, replay
from probes.console.display import live_stack
from probes.console.numbers import fmt_prob, fmt_ratio

from ._records import render
from .tiny_run import build, loader

ESC = "\x1b"


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def global_console() -> Iterator[None]:
    """RichProgressBar reconfigures rich's global console; put a default one back afterwards."""
    yield
    rich.reconfigure()


def handler_streams() -> list[object]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [h.stream for lg in loggers for h in getattr(lg, "handlers", []) if isinstance(h, logging.StreamHandler)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "tty"}, "Expected `mode` to be 'auto', 'live' or 'plain', got 'tty'."),
        ({"refresh_per_second": 0}, "Expected `refresh_per_second` in (0, 30], got 0."),
        ({"refresh_per_second": 60}, "Expected `refresh_per_second` in (0, 30], got 60."),
        ({"plain_every_n_steps": 0}, "Expected `plain_every_n_steps` to be a positive int, got 0."),
        ({"dashboard": object()}, "Expected `dashboard` to be a probes.console.Dashboard, got object."),
        ({"console": sys.stdout}, "Expected `console` to be a rich.console.Console, got"),
    ],
)
def test_arguments_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        LiveConsole(**kwargs)
    assert str(info.value).startswith(message)


def expected_line(history: list, names: list[str], step: int) -> str:
    """The summary line computed independently from the probe's own records (first vs latest)."""
    first, last = history[0].tensors["logp_seq"].double(), history[-1].tensors["logp_seq"].double()
    change = (last - first).abs()
    top = int(torch.argmax(change))  # no ties in this run
    p, base = math.exp(float(last[top])), math.exp(float(first[top]))
    mean = float((last / math.log(10)).mean())
    return (
        f"probes step {step} epoch {history[-1].epoch} steps/s — elapsed 0:00:00"
        f" | keyword: top {names[top]} {fmt_ratio(p / base)} (p_seq {fmt_prob(p)}), mean log10 p_seq {mean:.2f}"
    )


def test_plain_mode_off_a_terminal_prints_periodic_lines_without_escape_codes() -> None:
    out = Console(file=io.StringIO(), width=80, force_terminal=False)
    live = LiveConsole(console=out, plain_every_n_steps=2, dashboard=Dashboard(clock=lambda: 0.0))
    trainer, model, probe, _ = build("none", 5, live=live)
    trainer.fit(model, loader(5))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert ESC not in text
    lines = text.splitlines()
    # at global step 2 the readings of steps 0 and 1 exist, at step 4 those of 0..3; the end adds step 5
    # (read in on_train_end; it carries epoch 0, the epoch whose updates made those weights, although
    # Lightning already counts one completed epoch there)
    h = probe.history
    assert [(r.step, r.epoch) for r in h] == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]
    names = [pair.name for pair in probe.probe_set.pairs]
    assert lines == [expected_line(h[:2], names, 2), expected_line(h[:4], names, 4), expected_line(h, names, 5)]


def test_plain_mode_under_a_rich_bar_off_a_terminal(global_console: None) -> None:
    buf = io.StringIO()
    live = LiveConsole(plain_every_n_steps=3, dashboard=Dashboard(clock=lambda: 0.0))
    trainer, model, _, _ = build("rich", 4, live=live, bar_kwargs={"console_kwargs": {"file": buf}})
    trainer.fit(model, loader(4))
    text = buf.getvalue()
    assert ESC not in text
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("probes")] == [
        "probes step 3 epoch 0 steps/s — elapsed 0:00:00",
        "probes step 4 epoch 0 steps/s — elapsed 0:00:00",
    ]
    assert "Epoch 0" in text  # the bar's final frame


@pytest.mark.parametrize("bar", ["none", "rich"])
def test_exception_restores_the_terminal_and_flushes_the_run_log(bar: str, tmp_path, global_console: None) -> None:
    runlog = pytest.importorskip("probes.callbacks.run_log")
    from probes.runlog import open_run

    buf = io.StringIO()
    console_kwargs = {"file": buf, "force_terminal": True, "width": 100, "color_system": "standard"}
    live = LiveConsole(console=Console(**console_kwargs) if bar == "none" else None)
    before = (sys.stdout, sys.stderr, handler_streams())
    trainer, model, _, _ = build(
        bar,
        6,
        fail_at=3,
        live=live,
        extra=[runlog.RunLog(tmp_path / "run")],
        bar_kwargs={"console_kwargs": console_kwargs},
    )
    with pytest.raises(RuntimeError, match="boom at step 3"):
        trainer.fit(model, loader(6))
    assert (sys.stdout, sys.stderr, handler_streams()) == before
    assert live_stack(rich.get_console()) == []
    assert not live.is_live
    text = buf.getvalue()
    assert text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")  # cursor shown again after the last hide
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "training stopped: RuntimeError: boom at step 3" in plain
    assert "keyword · top 6 of 6 pairs by change" in plain
    run = open_run(tmp_path / "run")
    assert run.steps("keyword").tolist() == [0, 1, 2]
    # replaying the log shows the same keyword panel as the live dashboard did
    replayed = replay(run.records(), {s: run.describe(s) for s in run.sources()}, console=Console(file=io.StringIO()))
    live_panel = KeywordPanel(live.dashboard.states["keyword"], top_n=8)
    assert render(KeywordPanel(replayed.states["keyword"], top_n=8), 100) == render(live_panel, 100)


@pytest.mark.parametrize("bar_first", [False, True])
def test_keyboard_interrupt_under_a_rich_bar_in_either_order(bar_first: bool, global_console: None) -> None:
    buf = io.StringIO()
    console_kwargs = {"file": buf, "force_terminal": True, "width": 100}
    live = LiveConsole()
    trainer, model, _, _ = build(
        "rich", 6, fail_at=2, error=KeyboardInterrupt, live=live, bar_first=bar_first,
        bar_kwargs={"console_kwargs": console_kwargs},
    )  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown ends in sys.exit(1)
            trainer.fit(model, loader(6))
    finally:
        signal.signal(signal.SIGINT, handler)
    assert live_stack(rich.get_console()) == []
    assert [a.text for a in live.dashboard.alerts] == ["training stopped: interrupted"]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "Epoch 0" in plain and "keyword · top 6 of 6" in plain


def test_only_rank_zero_subscribes(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(file=io.StringIO())
    live = LiveConsole(mode="plain", console=out, plain_every_n_steps=1)
    trainer, model, probe, _ = build("none", 2, live=live)
    monkeypatch.setattr(type(trainer), "is_global_zero", property(lambda self: False))
    trainer.fit(model, loader(2))
    assert probe._sinks == [] and out.file.getvalue() == ""  # type: ignore[attr-defined]
