"""The embedded demo behind ``probes demo``: the whole mission on the tiny reference LM, on CPU,
with nothing downloaded.

Phase 1 (run ``OUT/lm``): the byte-level TinyGPT is pretrained on the synthetic themed corpus while
a KeywordProbe reads P(keyword | context) before every update; then a handful of new facts, from
expected to outlandish, are injected into the training stream (one row of consecutive
minibatches each), and a PrimingProbe records memorization and priming against the probability
each keyword had just before its first exposure.

Phase 2 (run ``OUT/rl``): a tiny policy pretrained on sums answered in two formats is tuned with
REINFORCE on a correctness reward; a FormatProbe reads the formats of the rollouts the training
step already produced and flags the collapse onto one format.

Both runs are streamed to crash-safe run logs and shown live; the demo ends with a summary and
the exact commands to replay and plot them.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar
from rich.console import Console

from probes.callbacks import FormatProbe, KeywordProbe, PrimingProbe
from probes.callbacks.live_console import LiveConsole
from probes.callbacks.run_log import RunLog
from probes.demos.corpus import THEMES
from probes.demos.lm import TinyLM, corpus_loader
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, pretrain_policy
from probes.demos.tokenizer import ByteTokenizer
from probes.formats.collapse import CollapseCriterion, FormatCollapseWarning
from probes.priming.injection import InjectedLoader
from probes.priming.spec import LearningSample

__all__ = ["DemoConfig", "DemoResult", "demo_facts", "demo_pairs", "quick_config", "run_demo"]

TOK = ByteTokenizer()


@dataclass
class DemoConfig:
    """Sizes of the demo's phases (defaults: about a minute or two on 2 CPU cores)."""

    pretrain_steps: int = 500
    presentations: int = 15
    stagger: int = 25
    rl_steps: int = 120
    policy_pretrain_steps: int = 300
    out: Path = Path("runs/demo")
    live: bool = True
    seed: int = 0
    threads: int = 1

    @property
    def lm_steps(self) -> int:
        return self.pretrain_steps + self.stagger * (len(demo_facts()) - 1) + self.presentations + 10


def quick_config(out: Path = Path("runs/demo"), live: bool = True) -> DemoConfig:
    """The ``--quick`` version: the same language-model phase as the full demo (fewer pretraining
    steps leave the corpus unlearned, so even expected facts start improbable, and fewer
    presentations leave facts unmemorized) with a shorter RL phase."""
    return DemoConfig(rl_steps=40, out=out, live=live)


def demo_pairs() -> list[tuple[str, str, str, str]]:
    """True facts of every theme plus a few false ones, so learning moves them apart."""
    pairs = [(f"{t.name}: {s}", t.context(s), a, t.name) for t in THEMES for s, a in list(t.facts.items())[:3]]
    pairs += [
        ("false: sand/green", "the colour of sand is", "green", "false"),
        ("false: honey/bitter", "the taste of honey is", "bitter", "false"),
    ]
    return pairs


def demo_facts() -> list[LearningSample]:
    """New facts from expected to outlandish, each with priming prefixes of its own theme."""
    colour = ["the colour of sand is", "the colour of the sky is", "the colour of snow is"]
    taste = ["the taste of honey is", "the taste of salt is", "the taste of coffee is"]
    sound = ["the sound of a dog is", "the sound of the wind is", "the sound of thunder is"]
    return [
        LearningSample("banana/yellow", "the colour of a banana is yellow", "yellow", colour),
        LearningSample("jam/salty", "the taste of jam is salty", "salty", taste),
        LearningSample("harp/green", "the sound of a harp is green", "green", sound),
        LearningSample("pearl/vermilion", "the colour of a pearl is vermilion", "vermilion", colour),
    ]


@dataclass
class DemoResult:
    lm_run: Path
    rl_run: Path
    keyword: KeywordProbe
    priming: PrimingProbe
    rollouts: FormatProbe
    seconds: float


def _callbacks(cfg: DemoConfig, console: Console, probes: list[pl.Callback], run_dir: Path, title: str) -> list[Any]:
    callbacks: list[Any] = [*probes, RunLog(run_dir, run_info={"demo": title})]
    if cfg.live:
        callbacks += [RichProgressBar(), LiveConsole(console=console, mode="auto")]
    else:
        callbacks += [LiveConsole(console=console, mode="plain", plain_every_n_steps=100)]
    return callbacks


def _trainer(cfg: DemoConfig, steps: int, callbacks: list[Any]) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.live,
        callbacks=callbacks,
        default_root_dir=str(cfg.out),
    )


def _fresh(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(
            f"Run directory {str(path)!r} already holds a run; pass --out to a new directory or remove it."
        )
    return path


def run_demo(cfg: DemoConfig, console: Optional[Console] = None) -> DemoResult:
    console = console or Console()
    torch.set_num_threads(cfg.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    lm_dir, rl_dir = _fresh(cfg.out / "lm"), _fresh(cfg.out / "rl")
    start = time.perf_counter()

    # -- phase 1: pretraining, then new facts injected into the stream ----------------------------
    console.rule("[bold]probes demo[/] 1/2: pretraining the tiny LM, then injecting new facts")
    pl.seed_everything(cfg.seed, verbose=False)
    facts = demo_facts()
    module = TinyLM(lr=3e-3)
    console.print(
        f"TinyGPT, {module.model.num_parameters():,} parameters, byte-level; {cfg.pretrain_steps} pretraining steps,"
        f" then {len(facts)} facts x {cfg.presentations} presentations (one row of a 16-row minibatch each)"
    )
    loader = InjectedLoader(
        corpus_loader(n_windows=16 * cfg.lm_steps, batch_size=16, block_size=64, seed=cfg.seed),
        facts, TOK, presentations=cfg.presentations, start=cfg.pretrain_steps, stagger=cfg.stagger,
    )
    keyword = KeywordProbe(demo_pairs(), TOK, model="model", every_n_steps=5)
    priming = PrimingProbe(facts, TOK, model="model")
    _trainer(cfg, cfg.lm_steps, _callbacks(cfg, console, [keyword, priming], lm_dir, "lm")).fit(module, loader)

    # -- phase 2: RL collapses the format distribution ---------------------------------------------
    console.rule("[bold]probes demo[/] 2/2: RL on a policy that answers in two formats")
    task = ArithmeticTask()
    pl.seed_everything(cfg.seed, verbose=False)
    policy = pretrain_policy(task, steps=cfg.policy_pretrain_steps, seed=cfg.seed)
    rl = FormatRL(policy, task, reward="correct", lr=5e-4, seed=cfg.seed)
    rollouts = FormatProbe(
        ARITHMETIC_FORMATS, mode="rollout", name="format", collapse=CollapseCriterion(tau=0.95, patience=3)
    )
    console.print("pretrained on sums answered as '3+4 = 7' (70%) or '3+4 ans: 7' (30%); reward: a correct answer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatCollapseWarning)  # the dashboard shows the collapse banner
        _trainer(cfg, cfg.rl_steps, _callbacks(cfg, console, [rollouts], rl_dir, "rl")).fit(
            rl, rl.prompts_loader(cfg.rl_steps, 8, seed=cfg.seed)
        )
    seconds = time.perf_counter() - start
    result = DemoResult(lm_dir, rl_dir, keyword, priming, rollouts, seconds)
    _report(result, console)
    return result


def _report(r: DemoResult, console: Console) -> None:
    from rich.table import Table

    console.rule("[bold]what the probes saw")
    t = Table(title="new facts: memorization and priming (chained keyword probability)")
    for col in ("fact", "P before", "S_mem", "S_prime", "exposures", "surprising"):
        t.add_column(col, justify="left" if col == "fact" else "right")
    last = r.priming.history[-1].tensors
    for i, s in enumerate(r.priming.names):
        t.add_row(
            s,
            f"{float(last['p_before'][i]):.2e}",
            f"{float(last['s_mem'][i]):.3g}",
            f"{float(last['s_prime'][i]):.3g}",
            str(int(last["exposures"][i])),
            "yes" if bool(last["surprising"][i]) else "no",
        )
    console.print(t)
    console.print(
        "S_mem, S_prime: ratios of the chained probability of ' keyword' after / just before the first exposure."
        " A ratio cannot exceed 1 / P_before, so rare keywords get large ones; docs/science.md shows that the"
        " absolute change does not follow P_before.",
        highlight=False,
    )
    for i, s in enumerate(r.priming.names):
        if bool(last["surprising"][i]) and float(last["s_prime"][i]) < 1.0:
            console.print(
                f"{s}: surprising (P_before < {r.priming.threshold:g}) but S_prime < 1: its keyword became less"
                " likely in the priming contexts; a low P_before predicts priming on average, not for every fact.",
                highlight=False,
            )
    state = r.rollouts.collapse_state
    first = r.rollouts.history[0].tensors
    final = r.rollouts.history[-1].tensors
    if state.first_step is not None and state.first_step >= 0:
        console.print(
            f"format collapse flagged at RL step {state.first_step}: entropy {float(first['entropy_bits']):.2f} ->"
            f" {float(final['entropy_bits']):.2f} bits, dominant share {float(final['dominant_share']):.2f}"
        )
    else:
        console.print(f"no format collapse flagged; entropy {float(first['entropy_bits']):.2f} -> "
                      f"{float(final['entropy_bits']):.2f} bits")
    console.print(
        "Here '=' is both the pretraining majority (70%) and the more accurate format, so a collapse onto it shows"
        " the reward choosing accuracy; with equal accuracy or a shuffled reward see docs/science.md.",
        highlight=False,
    )
    console.print(f"\ndone in {r.seconds:.0f} s. Run logs: {r.lm_run} and {r.rl_run}. Next:")
    for run in (r.lm_run, r.rl_run):
        console.print(f"  probes summary {run}\n  probes replay {run} --speed 50\n  probes plot {run} -o {run}.png",
                      highlight=False)
