"""The embedded demo behind ``probes demo``: the tiny reference LM trained on the themed corpus
while the probes watch. Later phases (fact injection, RL) are added as their probes land.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch
from rich.console import Console
from rich.table import Table

from probes.callbacks.keyword_probe import KeywordProbe
from probes.demos.corpus import THEMES
from probes.demos.lm import TinyLM, corpus_loader
from probes.demos.tokenizer import ByteTokenizer

__all__ = ["DemoConfig", "demo_pairs", "run_demo"]


@dataclass
class DemoConfig:
    steps: int = 300
    out: Optional[Path] = None
    live: bool = True
    seed: int = 0


def demo_pairs() -> list[tuple[str, str, str, str]]:
    """True facts of every theme plus a few false ones, so learning moves them apart."""
    pairs = [(f"{t.name}: {s}", t.context(s), a, t.name) for t in THEMES for s, a in list(t.facts.items())[:4]]
    pairs += [
        ("false: sand/green", "the colour of sand is", "green", "false"),
        ("false: honey/bitter", "the taste of honey is", "bitter", "false"),
        ("outlandish: sky/vermilion", "the colour of the sky is", "vermilion", "outlandish"),
    ]
    return pairs


def run_demo(cfg: DemoConfig, console: Optional[Console] = None) -> KeywordProbe:
    console = console or Console()
    pl.seed_everything(cfg.seed, verbose=False)
    probe = KeywordProbe(demo_pairs(), ByteTokenizer(), model="model", every_n_steps=max(1, cfg.steps // 50))
    module = TinyLM()
    trainer = pl.Trainer(
        max_steps=cfg.steps,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.live,
        callbacks=[probe],
        default_root_dir=str(cfg.out) if cfg.out else None,
    )
    console.rule("[bold]probes demo[/]: tiny reference LM on the themed corpus")
    console.print(f"model: {module.model.num_parameters():,} parameters, byte-level; {len(probe.items)} probe pairs")
    t0 = time.perf_counter()
    trainer.fit(module, corpus_loader(n_windows=16 * cfg.steps, batch_size=16, block_size=64, seed=cfg.seed))
    elapsed = time.perf_counter() - t0
    console.print(table_of_changes(probe))
    console.print(
        f"trained {trainer.global_step} optimizer steps in {elapsed:.1f} s; {len(probe.history)} probe readings"
    )
    return probe


def table_of_changes(probe: KeywordProbe) -> Table:
    """P(keyword | context) (chained over the keyword's bytes) at the first and last reading."""
    first, last = probe.history[0], probe.history[-1]
    t = Table(title=f"P(keyword | context), step {first.step} -> {last.step}")
    for col in ("pair", "P before", "P after", "x change"):
        t.add_column(col, justify="left" if col == "pair" else "right")
    lp0 = first.tensors["logp_seq"].cpu()
    lp1 = last.tensors["logp_seq"].cpu()
    for i, name in enumerate(probe.probe_set.names):
        ratio = math.exp(float(lp1[i] - lp0[i]))
        t.add_row(name, f"{math.exp(float(lp0[i])):.2e}", f"{math.exp(float(lp1[i])):.2e}", f"{ratio:,.0f}")
    return t


def quick_config(out: Optional[Path] = None, live: bool = True) -> DemoConfig:
    return DemoConfig(steps=60, out=out, live=live)


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(2)
    run_demo(DemoConfig())
