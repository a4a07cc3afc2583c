"""A short tiny-model training run with LiveConsole, run as a script by the console tests.

Usage: ``python tiny_run.py BAR STEPS [--fail-at STEP] [--plain-every N] [--width W]`` where BAR is
``rich``, ``tqdm`` or ``none``. Prints ``RUN FINISHED`` when ``fit`` returns and ``RUN FAILED`` when
it raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from probes import KeywordProbe
from probes.callbacks.live_console import LiveConsole
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader

PAIRS = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES[:2] for s, a in list(t.facts.items())[:3]]


class FailAt(pl.Callback):
    """Raises at a given optimizer step, to test cleanup on exceptions."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            raise RuntimeError(f"boom at step {self.step}")


def build(bar: str, steps: int, *, fail_at: int = -1, plain_every: int = 2, extra: tuple = ()) -> tuple:
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    model = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64))
    probe = KeywordProbe(PAIRS, ByteTokenizer(), model="model", log_scalars=False)
    console = LiveConsole(refresh_per_second=10, plain_every_n_steps=plain_every)
    callbacks: list = [probe, console, *extra]
    if bar == "rich":
        callbacks.append(RichProgressBar())
    elif bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    if fail_at >= 0:
        callbacks.append(FailAt(fail_at))
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar != "none",
        callbacks=callbacks,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    return trainer, model, probe, console


def main() -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("bar", choices=["rich", "tqdm", "none"])
    parser.add_argument("steps", type=int)
    parser.add_argument("--fail-at", type=int, default=-1)
    parser.add_argument("--plain-every", type=int, default=2)
    args = parser.parse_args()
    trainer, model, _, _ = build(args.bar, args.steps, fail_at=args.fail_at, plain_every=args.plain_every)
    try:
        trainer.fit(model, corpus_loader(n_windows=16 * args.steps, batch_size=4, block_size=64))
    except RuntimeError as err:
        print(f"RUN FAILED: {err}", flush=True)
        return 3
    print("RUN FINISHED", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
