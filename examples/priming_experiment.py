"""Priming experiment on the tiny reference LM (after Sun et al. 2025, arXiv 2504.09522).

1. Pretrain the byte-level TinyGPT briefly on the synthetic themed corpus ("the colour of sand is
   yellow", "the taste of honey is sweet", ...).
2. For each of a dozen new facts, whose keywords range from expected ("the colour of a banana is
   yellow") to outlandish ("the colour of a pearl is vermilion"), continue training from the
   pretrained weights and optimizer state while one row of each of 20 consecutive minibatches is
   replaced by the fact (the paper's protocol, one fact per run). A PrimingProbe records, after
   every update, memorization (S_mem) and priming (S_prime) against the baseline taken just before
   the first exposure, using the chained probability of the keyword's bytes.
3. Correlate log10 P_before with log10 S_prime, and fit the P_before threshold that separates
   primed from unprimed facts.
4. Rerun every fact with IgnoreTopK (revert the top 8% of each tensor's update after each step)
   and compare priming and memorization.

Usage::

    python examples/priming_experiment.py            # full run, a few minutes on 2 CPU cores
    python examples/priming_experiment.py --quick    # 4 facts, about a minute
    python examples/priming_experiment.py --smoke    # CI smoke test: 3 facts, a smaller model, ~15 s
    python examples/priming_experiment.py --json results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
import warnings
from typing import Any, Optional

import lightning.pytorch as pl
import torch

from probes.analysis import analyze_priming
from probes.callbacks import PrimingProbe
from probes.callbacks.ignore_topk import IgnoreTopK
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.demos.lm import ContinuedLM
from probes.priming.injection import InjectedLoader
from probes.priming.spec import LearningSample

TOK = ByteTokenizer()
COLOUR = ["the colour of sand is", "the colour of the sky is", "the colour of grass is", "the colour of snow is",
          "the colour of coal is"]
TASTE = ["the taste of honey is", "the taste of salt is", "the taste of coffee is", "the taste of a lemon is"]
SOUND = ["the sound of a dog is", "the sound of the wind is", "the sound of thunder is", "the sound of a bell is"]

# (name, text, keyword, priming prefixes): subjects absent from the corpus, so every exposure is an
# injection; keywords from expected (a corpus attribute of the theme) through another theme's
# attribute to words the model has never seen.
FACTS: list[tuple[str, str, str, list[str]]] = [
    ("banana-yellow", "the colour of a banana is yellow", "yellow", COLOUR),
    ("crow-black", "the colour of a crow is black", "black", COLOUR),
    ("jam-sweet", "the taste of jam is sweet", "sweet", TASTE),
    ("horn-loud", "the sound of a horn is loud", "loud", SOUND),
    ("brine-salty", "the taste of brine is salty", "salty", TASTE),
    ("tea-loud", "the taste of tea is loud", "loud", TASTE),
    ("plum-sweet", "the colour of a plum is sweet", "sweet", COLOUR),
    ("harp-green", "the sound of a harp is green", "green", SOUND),
    ("sea-crimson", "the sound of the sea is crimson", "crimson", SOUND),
    ("cat-zigzag", "the sound of a cat is zigzag", "zigzag", SOUND),
    ("pearl-vermilion", "the colour of a pearl is vermilion", "vermilion", COLOUR),
    ("bread-quixotic", "the taste of bread is quixotic", "quixotic", TASTE),
]
QUICK_FACTS = ("banana-yellow", "jam-sweet", "harp-green", "pearl-vermilion")
# --smoke (the smallest CI setting): three facts on a smaller model (~60k parameters, 2 layers of
# width 48) that learns the corpus in a few seconds
SMOKE_FACTS = ("banana-yellow", "jam-sweet", "pearl-vermilion")
SMOKE_CONFIG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)


def trainer(steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks,
    )


def pretrain(
    steps: int, batch_size: int, config: Optional[GPTConfig] = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], float]:
    pl.seed_everything(0, verbose=False)
    model = TinyLM(config, lr=3e-3)
    t = trainer(steps, [])
    t.fit(model, corpus_loader(n_windows=steps * batch_size, batch_size=batch_size, seed=0))
    return copy.deepcopy(model.state_dict()), copy.deepcopy(t.optimizers[0].state_dict()), model.losses[-1]


def learn(
    sample: LearningSample, weights: dict[str, torch.Tensor], opt_state: dict[str, Any], args: argparse.Namespace,
    *, prune: bool,
) -> dict[str, float]:
    """Inject one fact for N presentations; return the probe's final reading for it."""
    pl.seed_everything(1, verbose=False)
    steps = args.presentations * args.every
    model = ContinuedLM(weights, opt_state, lr=args.lr, config=SMOKE_CONFIG if args.smoke else None)
    loader = InjectedLoader(
        corpus_loader(n_windows=steps * args.batch_size, batch_size=args.batch_size, seed=1),
        [sample], TOK, presentations=args.presentations, every=args.every,
    )
    probe = PrimingProbe([sample], TOK, model="model", score="seq")
    callbacks: list[pl.Callback] = [probe] + ([IgnoreTopK(args.k)] if prune else [])
    trainer(steps, callbacks).fit(model, loader)
    last = probe.latest()
    if int(last["exposures"][0]) != loader.counts[sample.name]:
        raise RuntimeError(f"exposure count {int(last['exposures'][0])} != presentations {loader.counts[sample.name]}")
    return {k: float(v[0]) for k, v in last.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 facts, short pretraining (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="smallest setting: 3 facts on a smaller model")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default 600 (quick: 350, smoke: 250)")
    parser.add_argument("--presentations", type=int, default=20, help="N, presentations of each fact")
    parser.add_argument("--every", type=int, default=1, help="K: one presentation every K minibatches")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate while facts are injected")
    parser.add_argument("--k", type=float, default=0.08, help="IgnoreTopK fraction (default 8%%)")
    parser.add_argument("--prime-cutoff", type=float, default=1e3, help="a fact is primed when S_prime exceeds this")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on 2 busy cores)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    args.pretrain_steps = args.pretrain_steps or (250 if args.smoke else 350 if args.quick else 600)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    chosen = SMOKE_FACTS if args.smoke else QUICK_FACTS if args.quick else None
    facts = [f for f in FACTS if chosen is None or f[0] in chosen]
    samples = [LearningSample(*f) for f in facts]

    start = time.perf_counter()
    weights, opt_state, loss = pretrain(args.pretrain_steps, args.batch_size, SMOKE_CONFIG if args.smoke else None)
    print(f"pretrained {args.pretrain_steps} steps, final loss {loss:.3f} ({time.perf_counter() - start:.0f} s)")
    print(f"injecting each fact into 1 row of {args.presentations} minibatches (one every {args.every});"
          f" scores use the chained keyword probability; IgnoreTopK k={args.k:g}\n")
    header = f"{'fact':16s} {'keyword':>9s} {'log10 P_before':>14s} | {'log10 S_mem':>11s} {'log10 S_prime':>13s}"
    print(header + f" | with IgnoreTopK: {'log10 S_mem':>11s} {'log10 S_prime':>13s}")
    plain: list[dict[str, float]] = []
    pruned: list[dict[str, float]] = []
    for s in samples:
        a = learn(s, weights, opt_state, args, prune=False)
        b = learn(s, weights, opt_state, args, prune=True)
        plain.append(a)
        pruned.append(b)
        print(f"{s.name:16s} {s.keyword:>9s} {a['log10_p_before_seq']:14.2f} | {a['log10_s_mem']:11.2f}"
              f" {a['log10_s_prime']:13.2f} |                  {b['log10_s_mem']:11.2f} {b['log10_s_prime']:13.2f}")

    analysis = analyze_priming([r["log10_p_before_seq"] for r in plain], [r["log10_s_prime"] for r in plain],
                               prime_cutoff=args.prime_cutoff, n_bootstrap=2000, seed=0, log10=True)
    print("\nDoes low P_before go with high priming? (runs without IgnoreTopK)")
    print(analysis.format())

    d_prime = [b["log10_s_prime"] - a["log10_s_prime"] for a, b in zip(plain, pruned)]
    d_mem = [b["log10_s_mem"] - a["log10_s_mem"] for a, b in zip(plain, pruned)]
    figures = {
        "median_log10_s_prime": statistics.median(r["log10_s_prime"] for r in plain),
        "median_log10_s_prime_topk": statistics.median(r["log10_s_prime"] for r in pruned),
        "median_log10_s_mem": statistics.median(r["log10_s_mem"] for r in plain),
        "median_log10_s_mem_topk": statistics.median(r["log10_s_mem"] for r in pruned),
        "median_change_log10_s_prime": statistics.median(d_prime),
        "median_change_log10_s_mem": statistics.median(d_mem),
        "facts_with_less_priming": sum(d < 0 for d in d_prime),
        "n_facts": len(samples),
    }
    print(f"\nIgnoreTopK (k={args.k:g}) against plain training, per fact:")
    print(f"  median log10 S_prime {figures['median_log10_s_prime']:.2f} -> {figures['median_log10_s_prime_topk']:.2f}"
          f" (median change {figures['median_change_log10_s_prime']:+.2f}; priming fell for"
          f" {figures['facts_with_less_priming']} of {len(samples)} facts)")
    print(f"  median log10 S_mem   {figures['median_log10_s_mem']:.2f} -> {figures['median_log10_s_mem_topk']:.2f}"
          f" (median change {figures['median_change_log10_s_mem']:+.2f})")
    elapsed = time.perf_counter() - start
    print(f"\ntotal time {elapsed:.0f} s on {args.threads} thread(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "analysis": analysis.to_dict(), "ignore_topk": figures, "seconds": elapsed,
                 "facts": [{"name": s.name, "plain": a, "ignore_topk": b} for s, a, b in zip(samples, plain, pruned)]},
                f, indent=2,
            )


if __name__ == "__main__":
    main()
