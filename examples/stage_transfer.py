"""Stage-to-stage transfer on a CPU, in a few minutes.

Three "data mixtures" of the synthetic themed corpus (colour-heavy, balanced, sound-heavy) each
pretrain the same tiny GPT from the same initialisation, then the same SFT data (questions and
answers about half of the facts, ``"Q: colour of sand? A: yellow"``, loss on the answer only)
fine-tunes it. While it trains:

* a :class:`~probes.choice.probe.BenchmarkProbe` per stage scores six small
  benchmarks, two per theme (= category): a cloze form over every fact and a Q/A form over the
  facts held out of SFT;
* an :class:`~probes.ifd.probe.IFDProbe` follows the IFD of the SFT samples;
* every record goes to a run log per mixture (``OUT/<mixture>``).

Then it prints what ``probes compare OUT/*`` prints (cross-stage transfer, intra-category
coherence, calibration alignment, across the mixtures), the exposure-frequency fit (score of each
fact's cloze question at the end of pretraining against how often the fact appeared in the
windows the model trained on), and the IFD summary.

Run::

    python examples/stage_transfer.py            # about 1-3 minutes on 2 cores
    python examples/stage_transfer.py --quick    # CI smoke setting, well under a minute
    python examples/stage_transfer.py --mixtures 6 --out runs/transfer

With three runs every correlation has n = 3: the point is the protocol, not the statistics; use
``--mixtures`` for more runs.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from probes.analysis.correlation import Correlation
from probes.analysis.frequency import binned_frequency, frequency_fit
from probes.callbacks import BenchmarkProbe, IFDProbe
from probes.choice.spec import Benchmark, BenchmarkSuite
from probes.choice.stages import (
    LEVEL_LABELS,
    TransferReport,
    cross_stage_display_rows,
    load_run_scores,
    stage_transfer,
)
from probes.cli.compare import print_report
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, WindowDataset
from probes.runlog import RunWriter

MIXTURES: dict[str, tuple[float, float, float]] = {  # weights of the colour, taste, sound themes
    "colour-heavy": (0.70, 0.15, 0.15),
    "balanced": (0.34, 0.33, 0.33),
    "sound-heavy": (0.15, 0.15, 0.70),
}


@dataclass
class Config:
    pretrain_steps: int = 400
    sft_steps: int = 60
    batch_size: int = 16
    block_size: int = 64
    n_sentences: int = 6000
    every_n_steps: int = 100
    sft_lr: float = 1e-3
    replay: float = 1.0
    n_boot: int = 1000
    n_mixtures: int = 3
    seed: int = 0
    out: Optional[Path] = None


def quick_config() -> Config:
    return Config(pretrain_steps=60, sft_steps=15, n_sentences=1500, every_n_steps=30, n_boot=200)


def mixtures(n: int, seed: int) -> dict[str, tuple[float, ...]]:
    """The three named mixtures, then Dirichlet-drawn ones (seeded) up to ``n``."""
    out: dict[str, tuple[float, ...]] = dict(list(MIXTURES.items())[:n])
    rng = np.random.default_rng(seed)
    while len(out) < n:
        out[f"dirichlet-{len(out)}"] = tuple(float(w) for w in rng.dirichlet([1.0, 1.0, 1.0]))
    return out


def mixture_corpus(weights: Sequence[float], n_sentences: int, seed: int, *, qa_share: float = 0.25) -> str:
    """True facts joined by ". ": a theme drawn by ``weights``, then a subject with Zipf-like
    weights within the theme (so facts are seen at many different frequencies); a ``qa_share``
    of them is written in the Q/A form ("Q: colour of sand? A: yellow") instead of as a sentence."""
    rng = random.Random(seed)
    subject_weights = {t.name: [1.0 / (k + 1) for k in range(len(t.facts))] for t in THEMES}
    sentences = []
    for _ in range(n_sentences):
        theme = rng.choices(THEMES, weights=weights)[0]
        subject = rng.choices(list(theme.facts), weights=subject_weights[theme.name])[0]
        attribute = theme.facts[subject]
        if rng.random() < qa_share:
            sentences.append(f"{qa(theme.name, subject)} A: {attribute}")
        else:
            sentences.append(theme.sentence(subject, attribute))
    return ". ".join(sentences) + "."


def qa(theme_name: str, subject: str) -> str:
    return f"Q: {theme_name} of {subject}?"


def held_out(subject_index: int) -> bool:
    """Every other subject of a theme is kept out of the SFT data."""
    return subject_index % 2 == 1


def build_suite() -> BenchmarkSuite:
    """Per theme (category): a cloze benchmark over every fact, and a Q/A benchmark over the facts
    held out of SFT (so after SFT it measures pretraining knowledge in the SFT format)."""
    benches = []
    for theme in THEMES:
        options = list(dict.fromkeys(theme.facts.values()))
        cloze = [
            (theme.context(s), options, options.index(a), f"{s}", f"{theme.name}:{s}") for s, a in theme.facts.items()
        ]
        form = [
            (qa(theme.name, s) + " A:", options, options.index(a), f"{s}", f"{theme.name}:{s}")
            for i, (s, a) in enumerate(theme.facts.items())
            if held_out(i)
        ]
        benches.append(Benchmark(f"{theme.name}-cloze", cloze, category=theme.name))
        benches.append(Benchmark(f"{theme.name}-qa", form, category=theme.name))
    return BenchmarkSuite(benches)


def sft_samples() -> list[tuple[str, str, str]]:
    """(name, instruction, answer) for the facts not held out."""
    return [
        (f"{t.name}:{s}", qa(t.name, s), f"A: {a}")
        for t in THEMES
        for i, (s, a) in enumerate(t.facts.items())
        if not held_out(i)
    ]


class SFTDataset(Dataset):
    """One Q/A sample per row, right-padded; the loss covers the answer tokens only."""

    def __init__(self, samples: Sequence[tuple[str, str, str]], block_size: int) -> None:
        tok = ByteTokenizer()
        self.rows = []
        for _, instruction, answer in samples:
            prompt = tok.encode(instruction + " ")
            full = prompt + tok.encode(answer + ".")
            if len(full) > block_size + 1:
                raise ValueError(f"SFT sample {instruction!r} is longer than block_size {block_size}.")
            ids = torch.zeros(block_size + 1, dtype=torch.long)
            ids[: len(full)] = torch.tensor(full)
            labels = ids[1:].clone()
            labels[: len(prompt) - 1] = -100  # instruction tokens are context, not targets
            labels[len(full) - 1 :] = -100  # padding
            self.rows.append({"input_ids": ids[:-1], "labels": labels})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


def window_exposures(ds: WindowDataset, n_windows: int) -> dict[str, int]:
    """How often each fact sentence appears whole inside the first ``n_windows`` training windows."""
    tok = ByteTokenizer()
    counts = {f"{t.name}:{s}": 0 for t in THEMES for s in t.facts}
    sentences = {f"{t.name}:{s}": t.sentence(s, a) for t in THEMES for s, a in t.facts.items()}
    for i in range(min(n_windows, len(ds))):
        text = tok.decode(ds[i]["input_ids"].tolist() + ds[i]["labels"][-1:].tolist())
        for key, sentence in sentences.items():
            counts[key] += text.count(sentence)
    return counts


def trainer(cfg: Config, steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
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


def run_mixture(name: str, weights: Sequence[float], cfg: Config, out: Path) -> dict[str, object]:
    """Pretrain then SFT one mixture, logging every probe to ``out/name``."""
    tok = ByteTokenizer()
    suite = build_suite()
    corpus = mixture_corpus(weights, cfg.n_sentences, cfg.seed)
    n_windows = cfg.pretrain_steps * cfg.batch_size
    windows = WindowDataset(tok.encode(corpus), cfg.block_size, n_windows, seed=cfg.seed)
    pretrain_loader = DataLoader(windows, batch_size=cfg.batch_size, shuffle=False)
    sft = SFTDataset(sft_samples(), cfg.block_size)
    # SFT batches mix the Q/A samples with replayed pretraining windows (``replay`` of them per sample)
    replay = WindowDataset(tok.encode(corpus), cfg.block_size, int(cfg.replay * len(sft)) or 1, seed=cfg.seed + 1)
    sft_loader = DataLoader(
        ConcatDataset([sft, replay]),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )

    writer = RunWriter(out / name, run_info={"example": "stage_transfer", "mixture": name, "weights": list(weights)})
    bench_pt = BenchmarkProbe(
        suite, tok, name="bench_pretrain", stage="pretrain", every_n_steps=cfg.every_n_steps, model="model"
    )
    bench_sft = BenchmarkProbe(
        suite, tok, name="bench_sft", stage="sft", every_n_steps=cfg.every_n_steps, model="model"
    )
    ifd = IFDProbe(sft_samples(), tok, prefix=". ", every_n_steps=max(1, cfg.sft_steps // 4), model="model")
    for probe in (bench_pt, bench_sft, ifd):
        probe.subscribe(writer)

    pl.seed_everything(cfg.seed, verbose=False)  # same initial weights for every mixture
    module = TinyLM(GPTConfig(n_layer=2, n_embd=64, n_head=4, block_size=cfg.block_size), lr=3e-3)
    try:
        trainer(cfg, cfg.pretrain_steps, [bench_pt]).fit(module, pretrain_loader)
        module.lr = cfg.sft_lr
        trainer(cfg, cfg.sft_steps, [bench_sft, ifd]).fit(module, sft_loader)
    finally:
        writer.close()

    exposures = window_exposures(windows, n_windows)
    end_pt = bench_pt.history[-1].tensors
    flat = [(b, q) for b in suite for q in b.questions]  # suite order = the order of q_* tensors
    cloze = [i for i, (b, _) in enumerate(flat) if b.name.endswith("-cloze")]
    concepts = [q.concept for _, q in flat]
    ifd_first, ifd_last = ifd.history[0].tensors, ifd.history[-1].tensors
    return {
        "counts": [exposures[concepts[i]] for i in cloze],
        "p_correct": [float(end_pt["q_p_correct"][i]) for i in cloze],
        "ifd": (float(ifd_first["ifd"].mean()), float(ifd_last["ifd"].mean())),
        "flagged": (float(ifd_first["frac_flagged"]), float(ifd_last["frac_flagged"])),
        "loss": (module.losses[0], module.losses[-1]),
    }


def category_table(report: TransferReport) -> Table:
    """Both category statistics of cross-stage transfer, labelled: the mean of the per-benchmark
    correlations (the paper's) and the correlation of the category-mean scores."""
    table = Table(title=f"Cross-stage transfer by category: r [{report.ci:.0%} bootstrap CI over runs]")
    for col in ("metric", "category", "method", LEVEL_LABELS["category_avg"], LEVEL_LABELS["category"]):
        table.add_column(col)
    rows = [(m, row) for m, level, _, row in cross_stage_display_rows(report) if level != "benchmark"]
    for metric, avg in rows:
        if avg.level != "category_avg":
            continue
        means = report.transfer(avg.name, metric, level="category")
        for method in report.methods:
            table.add_row(
                metric, avg.name, method, _r_cell(avg.correlations[method]), _r_cell(means.correlations[method])
            )
        table.add_section()
    return table


def _r_cell(c: Correlation) -> str:
    if not c.defined:
        return "undefined"
    ci = "" if math.isnan(c.ci_low) else f" [{c.ci_low:+.2f},{c.ci_high:+.2f}]"
    return f"{c.r:+.2f}{ci}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke setting (well under a minute)")
    parser.add_argument("--mixtures", type=int, default=None, help="number of data mixtures (runs), >= 3")
    parser.add_argument("--out", type=Path, default=None, help="directory for the run logs (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for this tiny model on a busy CPU)",
    )
    args = parser.parse_args(argv)
    cfg = quick_config() if args.quick else Config()
    cfg.seed = args.seed
    if args.mixtures is not None:
        if args.mixtures < 3:
            parser.error(f"--mixtures must be at least 3 (cross-run correlations need 3 runs), got {args.mixtures}")
        cfg.n_mixtures = args.mixtures
    out = args.out or Path(tempfile.mkdtemp(prefix="stage_transfer-"))
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; pass a new directory")
    torch.set_num_threads(max(1, args.threads))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-fit banners
    warnings.filterwarnings("ignore", message=".*(LeafSpec|litlogger|does not have many workers).*")
    console = Console()

    runs: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    for name, weights in mixtures(cfg.n_mixtures, cfg.seed).items():
        t0 = time.perf_counter()
        runs[name] = result = run_mixture(name, weights, cfg, out)
        loss = result["loss"]
        console.print(
            f"{name:>14}: weights {', '.join(f'{w:.2f}' for w in weights)} | loss {loss[0]:.2f} -> {loss[1]:.2f}"  # type: ignore[index]
            f" | {time.perf_counter() - t0:.0f} s"
        )

    report = stage_transfer({name: load_run_scores(out / name) for name in runs}, n_boot=cfg.n_boot, seed=cfg.seed)
    print_report(report, console=console)
    console.print(f"same tables: probes compare {' '.join(str(out / n) for n in runs)}")
    console.print(category_table(report))

    counts = np.concatenate([np.asarray(r["counts"], dtype=float) for r in runs.values()])
    scores = np.concatenate([np.asarray(r["p_correct"], dtype=float) for r in runs.values()])
    fit = frequency_fit(counts, scores)
    binned = binned_frequency(counts, scores, n_bins=5)
    table = Table(title="Exposure frequency: P(correct option) of each fact's cloze question after pretraining")
    for col in ("exposures (bin)", "facts", "mean P(correct)"):
        table.add_column(col, justify="right")
    for lo, hi, n, m in zip(binned.edges[:-1], binned.edges[1:], binned.count, binned.mean_score):
        table.add_row(f"{lo:.0f} - {hi:.0f}", str(n), "" if math.isnan(m) else f"{m:.3f}")
    console.print(table)
    if fit.defined:
        console.print(
            f"fit over {fit.n} facts ({fit.n_excluded} never seen, excluded): {fit.slope:+.3f} per decade of"
            f" exposure, intercept {fit.intercept:.3f}, Pearson r = {fit.r:+.2f} (p = {fit.p_value:.2g})"
        )
    else:
        console.print(f"frequency fit undefined: {fit.reason}")

    ifd = Table(title="IFD of the SFT samples (answer tokens only): start -> end of SFT")
    for col in ("mixture", "mean IFD", "flagged (IFD >= 1)"):
        ifd.add_column(col, justify="right")
    for name, r in runs.items():
        (a, b), (fa, fb) = r["ifd"], r["flagged"]  # type: ignore[misc]
        ifd.add_row(name, f"{a:.3f} -> {b:.3f}", f"{fa:.0%} -> {fb:.0%}")
    console.print(ifd)
    console.print(f"total {time.perf_counter() - started:.0f} s; run logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
