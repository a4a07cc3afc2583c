"""Output space versus instructions (Kung & Peng 2023, arXiv 2305.11383) on a tiny byte-level GPT.

Kung & Peng find that instruction-tuned models owe much of their gain to learning the *output
space* (which answers are allowed) rather than the instruction's meaning: models tuned with the
instructions' semantics removed do about as well, and a random guesser that knows the label set
comes close to the tuned model (42.6% against 43% exact match in their low-resource setting).

This example measures the same quantities with ``BenchmarkProbe`` on a toy review-sentiment task:

* **Pretraining** (shared by all conditions of a seed): reviews of two adjectives
  (``review: the film was good and dull.``) followed by a verdict in words (``verdict: i was
  torn.``), so the model learns the polarity of the words but never sees the labels.
* **Instruction tuning** on ``n_train`` labelled reviews, ``INSTRUCTION + "review: ...\\nanswer:"``
  -> ``" positive" | " negative" | " mixed"`` (both adjectives positive, both negative, one each),
  loss on the answer only, in three conditions from the same pretrained weights:
  ``correct`` (the task instruction), ``empty`` (no instruction) and ``shuffled`` (the correct
  instruction with the labels permuted across the training reviews: the output space without the
  mapping; a control).
* **Readings** on held-out reviews, every few steps: accuracy, the chance accuracy of a uniform
  guess over the three labels (1/3), the majority-label baseline (about 1/2: "mixed" is the most
  frequent label), accuracy minus each, and the label mass (summed probability of the three
  labels), each under three evaluation prompts scored in one batched pass: the correct
  instruction (the benchmark's own), no instruction and a misleading one (``ablations=``).

Run::

    python examples/output_space.py                 # 5 seeds, two training-set sizes
    python examples/output_space.py --quick         # CI smoke setting, well under a minute
    python examples/output_space.py --seeds 0 1 2 --out runs/output_space
    python examples/output_space.py --report runs/output_space   # the figures again, from the logs

Every figure printed is read back from the run logs the probes wrote (``OUT/<size>/<cond>/seed<k>``);
intervals are 95% t-intervals over seeds.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from scipy import stats
from torch.utils.data import DataLoader, Dataset

from probes.callbacks import BenchmarkProbe
from probes.choice.spec import Benchmark
from probes.demos import ByteTokenizer, GPTConfig, TinyLM
from probes.runlog import RunWriter, open_run

POSITIVE = ("good", "great", "lovely", "bright", "warm", "kind", "fine", "sweet")
NEGATIVE = ("bad", "awful", "dull", "cold", "grim", "sad", "poor", "harsh")
NOUNS = ("film", "meal", "room", "song", "book", "trip", "game", "show")
LABELS = ("positive", "negative", "mixed")
VERDICTS = {"positive": "i loved it.", "negative": "i hated it.", "mixed": "i was torn."}
INSTRUCTION = "Sentiment of the review?\n"  # the task instruction
MISLEADING = "Colour of the object?\n"  # an instruction for another task
CONDITIONS = ("correct", "empty", "shuffled")
EVAL_PROMPTS = ("correct", "empty", "misleading")  # the benchmark's own instruction, then the ablations


@dataclass
class Config:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sizes: tuple[int, ...] = (16, 256)  # labelled reviews for instruction tuning (low resource, more)
    pretrain_steps: int = 400
    sft_steps: int = 150
    batch_size: int = 32
    every_n_steps: int = 10
    n_test: int = 60
    lr: float = 3e-3
    sft_lr: float = 2e-3
    n_layer: int = 2
    n_embd: int = 64
    out: Optional[Path] = None


def quick_config() -> Config:
    return Config(seeds=(0, 1), sizes=(16,), pretrain_steps=30, sft_steps=10, every_n_steps=5, n_test=18)


# ------------------------------------------------------------------------------------------ data


def label_of(a1: str, a2: str) -> str:
    pos = (a1 in POSITIVE) + (a2 in POSITIVE)
    return "positive" if pos == 2 else "negative" if pos == 0 else "mixed"


def all_reviews() -> list[tuple[str, str]]:
    """Every (review text, label): noun x first adjective x second adjective (two different words)."""
    adjectives = POSITIVE + NEGATIVE
    return [
        (f"the {n} was {a1} and {a2}.", label_of(a1, a2))
        for n in NOUNS
        for a1 in adjectives
        for a2 in adjectives
        if a1 != a2
    ]


def split(seed: int, n_test: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train pool, test): the test reviews are never in instruction tuning (they may be in pretraining)."""
    reviews = all_reviews()
    random.Random(1000 + seed).shuffle(reviews)
    return reviews[n_test:], reviews[:n_test]


def prompt(instruction: str, text: str) -> str:
    return f"{instruction}review: {text}\nanswer:"


class Rows(Dataset):
    """Right-padded rows; the loss covers the tokens from ``target_from`` on (and never padding)."""

    def __init__(self, rows: Sequence[tuple[str, str]], block_size: int) -> None:
        tok = ByteTokenizer()
        self.rows = []
        for context, target in rows:
            ctx, full = tok.encode(context), tok.encode(context + target)
            if len(full) > block_size + 1:
                raise ValueError(f"Row {context + target!r} is longer than block_size {block_size}.")
            ids = torch.zeros(block_size + 1, dtype=torch.long)
            ids[: len(full)] = torch.tensor(full)
            labels = ids[1:].clone()
            labels[: max(len(ctx) - 1, 0)] = -100
            labels[len(full) - 1 :] = -100
            self.rows.append({"input_ids": ids[:-1], "labels": labels})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


def pretrain_rows(pool: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("", f"review: {text}\nverdict: {VERDICTS[label]}\n") for text, label in pool]


def sft_rows(train: Sequence[tuple[str, str]], condition: str, seed: int) -> list[tuple[str, str]]:
    labels = [label for _, label in train]
    if condition == "shuffled":
        random.Random(2000 + seed).shuffle(labels)
    instruction = "" if condition == "empty" else INSTRUCTION
    return [(prompt(instruction, text), f" {label}\n") for (text, _), label in zip(train, labels)]


def verdict_benchmark(test: Sequence[tuple[str, str]]) -> Benchmark:
    """The pretraining task on the test reviews: which verdict follows (no labels involved)."""
    verdicts = [VERDICTS[label] for label in LABELS]
    return Benchmark(
        "verdict",
        [(f"review: {text}\nverdict:", verdicts, LABELS.index(label)) for text, label in test],
        category="pretraining",
    )


def benchmark(test: Sequence[tuple[str, str]]) -> Benchmark:
    return Benchmark(
        "sentiment",
        [(f"review: {text}\nanswer:", list(LABELS), LABELS.index(label)) for text, label in test],
        category="classification",
        instruction=INSTRUCTION,
    )


# -------------------------------------------------------------------------------------- training


def trainer(steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def loader(rows: Dataset, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(rows, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def pretrained(cfg: Config, seed: int, run_dir: Path) -> dict[str, torch.Tensor]:
    """Pretrain on reviews with verdicts (no labels); a probe logs the verdict accuracy on the test
    reviews at the start and the end to ``run_dir``."""
    pool, test = split(seed, cfg.n_test)
    pl.seed_everything(seed, verbose=False)
    module = TinyLM(GPTConfig(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=4, block_size=96), lr=cfg.lr)
    probe = BenchmarkProbe(
        verdict_benchmark(test),
        ByteTokenizer(),
        name="verdict",
        stage="pretrain",
        every_n_steps=cfg.pretrain_steps,
        model="model",
        log_scalars=False,
    )
    writer = RunWriter(run_dir, run_info={"example": "output_space", "seed": seed, "stage": "pretrain"})
    probe.subscribe(writer)
    try:
        trainer(cfg.pretrain_steps, [probe]).fit(module, loader(Rows(pretrain_rows(pool), 96), cfg.batch_size, seed))
    finally:
        writer.close()
    return {k: v.clone() for k, v in module.state_dict().items()}


def read_verdict(run_dir: Path) -> float:
    """Verdict accuracy at the end of pretraining, from the log."""
    _, acc = open_run(run_dir).read("verdict/accuracy")
    return float(acc[-1, 0])


def tune(cfg: Config, seed: int, size: int, condition: str, weights: dict[str, torch.Tensor], run_dir: Path) -> None:
    """Instruction-tune ``condition`` from ``weights``, the probe logging to ``run_dir``."""
    pool, test = split(seed, cfg.n_test)
    train = pool[:size]
    pl.seed_everything(seed, verbose=False)
    module = TinyLM(GPTConfig(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=4, block_size=96), lr=cfg.sft_lr)
    module.load_state_dict(weights)
    probe = BenchmarkProbe(
        benchmark(test),
        ByteTokenizer(),
        name="bench",
        stage="sft",
        every_n_steps=cfg.every_n_steps,
        model="model",
        ablations={"empty": "", "misleading": MISLEADING},
        log_scalars=False,
    )
    writer = RunWriter(run_dir, run_info={"example": "output_space", "seed": seed, "size": size, "cond": condition})
    probe.subscribe(writer)
    try:
        trainer(cfg.sft_steps, [probe]).fit(module, loader(Rows(sft_rows(train, condition, seed), 96), 16, seed))
    finally:
        writer.close()


# -------------------------------------------------------------------------------------- analysis


@dataclass
class RunFigures:
    """What one run's log says (final reading, and two moments of the trajectory)."""

    accuracy: dict[str, float]  # evaluation prompt -> accuracy
    label_mass: dict[str, float]  # evaluation prompt -> mean label mass
    chance: float
    majority: float
    mass_before: float  # label mass (matched prompt) before tuning
    acc_before: float  # accuracy (matched prompt) before tuning: argmax over the labels
    step_mass_09: int  # first reading with label mass >= 0.9 under the matched prompt (-1: never)
    acc_at_mass_09: float  # accuracy at that reading (NaN: never)
    steps: list[int] = field(default_factory=list)


def matched_prompt(condition: str) -> str:
    return "empty" if condition == "empty" else "correct"


def read_run(run_dir: Path, condition: str) -> RunFigures:
    run = open_run(run_dir)
    steps, acc = run.read("bench/accuracy")
    _, mass = run.read("bench/label_mass")
    _, abl_acc = run.read("bench/ablation_accuracy")
    _, abl_mass = run.read("bench/ablation_label_mass")
    _, chance = run.read("bench/chance")
    _, majority = run.read("bench/majority")
    names = [a["name"] for a in run.describe("bench")["ablations"]]
    acc_by = {"correct": acc[:, 0], **{n: abl_acc[:, i, 0] for i, n in enumerate(names)}}
    mass_by = {"correct": mass[:, 0], **{n: abl_mass[:, i, 0] for i, n in enumerate(names)}}
    m = matched_prompt(condition)
    hit = np.flatnonzero(mass_by[m] >= 0.9)
    return RunFigures(
        accuracy={p: float(acc_by[p][-1]) for p in EVAL_PROMPTS},
        label_mass={p: float(mass_by[p][-1]) for p in EVAL_PROMPTS},
        chance=float(chance[-1, 0]),
        majority=float(majority[-1, 0]),
        mass_before=float(mass_by[m][0]),
        acc_before=float(acc_by[m][0]),
        step_mass_09=int(steps[hit[0]]) if hit.size else -1,
        acc_at_mass_09=float(acc_by[m][hit[0]]) if hit.size else math.nan,
        steps=[int(s) for s in steps],
    )


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): 95% t-interval over seeds (low = high = mean for one value)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def fmt(ci: tuple[float, float, float], signed: bool = False) -> str:
    mean, low, high = ci
    if math.isnan(mean):
        return "-"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


COLUMNS = (
    "size",
    "train cond",
    "acc matched",
    "acc - chance",
    "acc - majority",
    "mass matched",
    "acc correct",
    "acc empty",
    "acc misleading",
)


def summarize(figures: dict[tuple[int, str], list[RunFigures]]) -> list[dict[str, Any]]:
    """One row per (size, condition): mean and interval over seeds of each column."""
    rows = []
    for (size, cond), runs in figures.items():
        m = matched_prompt(cond)
        acc = [r.accuracy[m] for r in runs]
        rows.append(
            {
                "size": size,
                "cond": cond,
                "n_seeds": len(runs),
                "acc matched": interval(acc),
                "acc - chance": interval([a - r.chance for a, r in zip(acc, runs)]),
                "acc - majority": interval([a - r.majority for a, r in zip(acc, runs)]),
                "mass matched": interval([r.label_mass[m] for r in runs]),
                "acc correct": interval([r.accuracy["correct"] for r in runs]),
                "acc empty": interval([r.accuracy["empty"] for r in runs]),
                "acc misleading": interval([r.accuracy["misleading"] for r in runs]),
                "mass before": interval([r.mass_before for r in runs]),
                "acc before": interval([r.acc_before for r in runs]),
                "step mass 0.9": [r.step_mass_09 for r in runs],
                "acc at mass 0.9": interval([r.acc_at_mass_09 for r in runs]),
                "chance": interval([r.chance for r in runs]),
                "majority": interval([r.majority for r in runs]),
            }
        )
    return rows


def paired(figures: dict[tuple[int, str], list[RunFigures]], size: int, a: str, b: str) -> tuple[float, float, float]:
    """Interval over seeds of the matched-prompt accuracy of condition ``a`` minus ``b`` (same seeds)."""
    ra, rb = figures[(size, a)], figures[(size, b)]
    return interval([x.accuracy[matched_prompt(a)] - y.accuracy[matched_prompt(b)] for x, y in zip(ra, rb)])


def render(rows: list[dict[str, Any]], figures: dict[tuple[int, str], list[RunFigures]]) -> list[str]:
    lines = [
        "mean [95% t-interval over seeds]; acc = accuracy on held-out reviews; 'matched' = the prompt the"
        " condition was tuned with",
        " | ".join(COLUMNS),
    ]
    for r in rows:
        cells = [str(r["size"]), r["cond"]]
        for col in COLUMNS[2:]:
            cells.append(fmt(r[col], signed=col.startswith("acc -")))
        lines.append(" | ".join(cells))
    first = rows[0]
    lines.append(
        f"chance (uniform over {len(LABELS)} labels) {first['chance'][0]:.3f}; majority-label baseline"
        f" {fmt(first['majority'])}; seeds {first['n_seeds']}"
    )
    for r in rows:
        lines.append(
            f"size {r['size']} {r['cond']}: before tuning label mass {fmt(r['mass before'])}, accuracy"
            f" {fmt(r['acc before'])}; first reading with"
            f" mass >= 0.9 at steps {r['step mass 0.9']}, accuracy there {fmt(r['acc at mass 0.9'])}"
        )
    sizes = sorted({size for size, _ in figures})
    for size in sizes:
        vs_empty = fmt(paired(figures, size, "correct", "empty"), True)
        vs_shuffled = fmt(paired(figures, size, "correct", "shuffled"), True)
        lines.append(
            f"size {size}: paired accuracy difference correct - empty {vs_empty}; correct - shuffled {vs_shuffled}"
        )
    return lines


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke setting (well under a minute)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0..4; --quick 0 1)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the run logs (default: a temp dir)")
    parser.add_argument(
        "--report", type=Path, default=None, metavar="OUT", help="print the figures of the run logs in OUT; no training"
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        return report(args.report)
    cfg = quick_config() if args.quick else Config()
    if args.seeds is not None:
        cfg.seeds = tuple(args.seeds)
    out = args.out or Path(tempfile.mkdtemp(prefix="output_space-"))
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; pass a new directory")
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")
    started = time.perf_counter()
    figures: dict[tuple[int, str], list[RunFigures]] = {}
    verdicts: list[float] = []
    for seed in cfg.seeds:
        pretrain_dir = out / "pretrain" / f"seed{seed}"
        weights = pretrained(cfg, seed, pretrain_dir)
        verdicts.append(read_verdict(pretrain_dir))
        for size in cfg.sizes:
            for cond in CONDITIONS:
                run_dir = out / str(size) / cond / f"seed{seed}"
                tune(cfg, seed, size, cond, weights, run_dir)
                figures.setdefault((size, cond), []).append(read_run(run_dir, cond))
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    result = print_figures(figures, verdicts)
    seconds = time.perf_counter() - started
    print(f"total {seconds:.0f} s; run logs in {out}")
    return {**result, "out": out, "seconds": seconds}


def print_figures(figures: dict[tuple[int, str], list[RunFigures]], verdicts: list[float]) -> dict[str, Any]:
    rows = summarize(figures)
    verdict = interval(verdicts)
    print(f"after pretraining (no labels seen): verdict accuracy on the test reviews {fmt(verdict)} (chance 0.333)")
    for line in render(rows, figures):
        print(line)
    return {"rows": rows, "figures": figures, "verdict": verdict}


def report(out: Path) -> dict[str, Any]:
    """The figures of a finished run directory ``out`` (sizes, conditions and seeds from its layout)."""
    if not (out / "pretrain").is_dir():
        raise SystemExit(f"--report {out}: no pretrain/ directory; pass the --out of a finished run")
    seeds = sorted(int(p.name[4:]) for p in (out / "pretrain").iterdir() if p.name.startswith("seed"))
    sizes = sorted(int(p.name) for p in out.iterdir() if p.name.isdigit())
    figures = {
        (size, cond): [read_run(out / str(size) / cond / f"seed{seed}", cond) for seed in seeds]
        for size in sizes
        for cond in CONDITIONS
    }
    result = print_figures(figures, [read_verdict(out / "pretrain" / f"seed{seed}") for seed in seeds])
    return {**result, "out": out}


if __name__ == "__main__":
    main()
    sys.exit(0)
