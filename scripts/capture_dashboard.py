"""Capture the live dashboard as an SVG during a short tiny-model training run (for the README).

Trains the tiny reference LM on the synthetic themed corpus for a few dozen steps with a
KeywordProbe, a PrimingProbe (two new facts injected into the batches) and a FormatProbe in scored
mode (the distribution over colour words after "the colour of ... is"), all feeding a LiveConsole.
At the chosen step the dashboard is printed on a recording console and saved with rich's
``save_svg``. The run itself writes plain summary lines, so the script works without a terminal.

Usage::

    python scripts/capture_dashboard.py docs/dashboard.svg
    python scripts/capture_dashboard.py out.svg --steps 80 --at 60 --width 140
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from rich.console import Console
from rich.terminal_theme import MONOKAI

from probes import KeywordProbe
from probes.callbacks import FormatProbe, PrimingProbe
from probes.callbacks.live_console import LiveConsole
from probes.console import Dashboard
from probes.demos import THEMES, ByteTokenizer, TinyLM, corpus_loader
from probes.formats.spec import LabelSpace
from probes.priming.injection import InjectedLoader
from probes.priming.spec import LearningSample

TOK = ByteTokenizer()
COLOUR_PROMPTS = [
    "the colour of sand is",
    "the colour of the sky is",
    "the colour of grass is",
    "the colour of snow is",
]
FACTS = [
    LearningSample("pearl-vermilion", "the colour of a pearl is vermilion", "vermilion", COLOUR_PROMPTS),
    LearningSample(
        "jam-sweet", "the taste of jam is sweet", "sweet", ["the taste of honey is", "the taste of salt is"]
    ),
]


class Snapshot(pl.Callback):
    """Prints the dashboard on a recording console at optimizer step ``at`` and saves it as SVG."""

    def __init__(self, dashboard: Dashboard, path: Path, *, at: int, width: int, title: str) -> None:
        self.dashboard, self.path, self.at, self.width, self.title = dashboard, path, at, width, title
        self.saved = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if not self.saved and trainer.global_step >= self.at:
            self.save()

    def save(self) -> None:
        console = Console(
            record=True, width=self.width, file=io.StringIO(), force_terminal=True, color_system="truecolor"
        )
        console.print(self.dashboard)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        console.save_svg(str(self.path), title=self.title, theme=MONOKAI)
        self.saved = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="path of the SVG to write")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps to train (default 60)")
    parser.add_argument("--at", type=int, default=None, help="step to capture (default: the last)")
    parser.add_argument("--width", type=int, default=120, help="console width in columns, 80..200 (default 120)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be at least 2, got {args.steps}")
    at = args.steps if args.at is None else args.at
    if not 1 <= at <= args.steps:
        parser.error(f"--at must be between 1 and --steps ({args.steps}), got {at}")
    if not 80 <= args.width <= 200:
        parser.error(f"--width must be between 80 and 200, got {args.width}")

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    pl.seed_everything(0, verbose=False)

    pairs = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES for s, a in t.facts.items()]
    colours = sorted({a for t in THEMES if t.name == "colour" for a in t.facts.values()})
    dashboard = Dashboard(top_n=8)
    probes = [
        KeywordProbe(pairs, TOK, model="model", log_scalars=False),
        PrimingProbe(FACTS, TOK, model="model", log_scalars=False),
        FormatProbe(LabelSpace(colours), mode="scored", name="colour", tokenizer=TOK, prompts=COLOUR_PROMPTS,
                    model="model", collapse=None, log_scalars=False),
    ]  # fmt: skip
    snapshot = Snapshot(dashboard, args.out, at=at, width=args.width, title=f"probes · step {at}")
    live = LiveConsole(dashboard, mode="plain", plain_every_n_steps=max(1, args.steps // 4))
    loader = InjectedLoader(
        corpus_loader(n_windows=16 * args.steps, batch_size=16), FACTS, TOK, presentations=8, every=3, stagger=1
    )
    trainer = pl.Trainer(
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[*probes, live, snapshot],
    )
    trainer.fit(TinyLM(), loader)
    if not snapshot.saved:
        snapshot.save()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
