"""A short tiny-model training run with LiveConsole, run as a script by the console tests.

Usage: ``python tiny_run.py BARS STEPS [--fail-at STEP] [--sleep SECONDS]`` where BARS is a
comma-separated list of ``rich``, ``tqdm`` and ``none``, one training run each (one interpreter
start for all). Each run prints ``RUN START <bar>`` first, then ``RUN FINISHED`` when ``fit``
returns or ``RUN FAILED: ...`` when it raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from probes import KeywordProbe
from probes.callbacks.live_console import LiveConsole
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader

PAIRS = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES[:2] for s, a in list(t.facts.items())[:3]]


class FailAt(pl.Callback):
    """Raises ``error`` when training reaches optimizer step ``step``; optionally slows each batch."""

    def __init__(self, step: int = -1, error: type[BaseException] = RuntimeError, sleep: float = 0.0) -> None:
        self.step = step
        self.error = error
        self.sleep = sleep

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if self.sleep:
            time.sleep(self.sleep)
        if trainer.global_step == self.step:
            raise self.error(f"boom at step {self.step}")


def build(
    bar: str,
    steps: int,
    *,
    fail_at: int = -1,
    error: type[BaseException] = RuntimeError,
    sleep: float = 0.0,
    live: Optional[LiveConsole] = None,
    extra: Sequence[pl.Callback] = (),
    bar_first: bool = False,
    bar_kwargs: Optional[dict] = None,
) -> tuple[pl.Trainer, TinyLM, KeywordProbe, LiveConsole]:
    """A Trainer for ``steps`` optimizer steps of a 1-layer tiny GPT with a KeywordProbe and a LiveConsole."""
    pl.seed_everything(0, verbose=False)
    model = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64))
    probe = KeywordProbe(PAIRS, ByteTokenizer(), model="model", log_scalars=False)
    console = live if live is not None else LiveConsole(refresh_per_second=10, plain_every_n_steps=2)
    callbacks: list = [probe, console, *extra]
    if bar == "rich":
        callbacks.insert(0 if bar_first else len(callbacks), RichProgressBar(**(bar_kwargs or {})))
    elif bar == "tqdm":
        callbacks.insert(0 if bar_first else len(callbacks), TQDMProgressBar())
    if fail_at >= 0 or sleep:
        callbacks.append(FailAt(fail_at, error, sleep))
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


def loader(steps: int) -> Any:
    """A loader with more batches than ``steps``, so ``max_steps`` ends training."""
    return corpus_loader(n_windows=16 * steps, batch_size=4, block_size=64)


def main() -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("bars", help="comma-separated runs, each 'rich', 'tqdm' or 'none'")
    parser.add_argument("steps", type=int)
    parser.add_argument("--fail-at", type=int, default=-1)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep before each batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rc = 0
    for bar in args.bars.split(","):
        print(f"RUN START {bar}", flush=True)
        trainer, model, _, _ = build(bar, args.steps, fail_at=args.fail_at, sleep=args.sleep)
        try:
            trainer.fit(model, loader(args.steps))
        except RuntimeError as err:
            print(f"RUN FAILED: {err}", flush=True)
            rc = 3
            continue
        print("RUN FINISHED", flush=True)
    return rc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
