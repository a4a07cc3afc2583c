"""The information gain of a helpful vs an irrelevant thought, over pretraining of the tiny GPT.

The tiny GPT is pretrained on the synthetic themed corpus (sentences such as ``"the colour of sand
is yellow"`` joined by ``". "``) while a :class:`~probes.thought.probe.ThoughtGainProbe` reads, for
each of the 12 colour facts, ``log p(x | c, z) - log p(x | c)`` with the context ``c = "."``, the
continuation ``x`` the fact's sentence, and three thoughts ``z``:

* helpful: the same fact stated first (``"the colour of sand is yellow."``);
* irrelevant (control): a true fact of another theme (``"the sound of a drum is loud."``);
* misleading (control): the fact with a wrong colour that the corpus uses elsewhere
  (``"the colour of sand is blue."``).

The baseline is also scored against an EMA copy of the weights (decay 0.9, RLP's form of the
reward). For each thought type and reading it prints the mean gain (nats per continuation) over the
12 facts, as mean over seeds with a 95% t-interval across seeds.

Run::

    python examples/thought_gain.py              # 3 seeds, about a minute on 2 cores
    python examples/thought_gain.py --quick      # CI smoke setting
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyGPT, corpus_loader
from probes.integrations.loop import ProbeLoop
from probes.thought.probe import ThoughtGainProbe

CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=96)
KINDS = ("helpful", "irrelevant", "misleading")


def items() -> list[tuple[str, str, str, str]]:
    colour = THEMES[0]
    others = [t.sentence(s, a) for t in THEMES[1:] for s, a in t.facts.items()]
    wrong = {"yellow": "blue", "blue": "red", "green": "white", "white": "black", "black": "green", "red": "yellow"}
    out = []
    for i, (subject, attr) in enumerate(colour.facts.items()):
        sentence = colour.sentence(subject, attr)
        out += [
            (f"helpful/{subject}", ".", f"{sentence}.", sentence),
            (f"irrelevant/{subject}", ".", f"{others[i % len(others)]}.", sentence),
            (f"misleading/{subject}", ".", f"{colour.sentence(subject, wrong[attr])}.", sentence),
        ]
    return out


def run_seed(seed: int, steps: int, every: int, out: Path) -> tuple[list[int], dict[str, np.ndarray]]:
    torch.manual_seed(seed)
    model = TinyGPT(CFG)
    probe = ThoughtGainProbe(items(), ByteTokenizer(), every_n_steps=every, ema_decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = corpus_loader(n_windows=16 * steps, batch_size=16, block_size=64, seed=seed)
    with ProbeLoop([probe], model, run_log=out / f"seed{seed}") as loop:
        for b in loader:
            logits = model(b["input_ids"])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), b["labels"].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    steps_read, gain = probe.series("gain")
    _, gain_ema = probe.series("gain_ema")
    kinds = np.array([it.name.split("/")[0] for it in probe.items])
    per_kind = {}
    for k in KINDS:
        per_kind[k] = gain[:, kinds == k].double().mean(dim=1).numpy()
        per_kind[f"{k}_ema"] = gain_ema[:, kinds == k].double().mean(dim=1).numpy()
    return steps_read, per_kind


def interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (the interval is nan for one seed)."""
    m = float(values.mean())
    if len(values) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return m, m - h, m + h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/thought_gain"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (2 if args.quick else 3)
    steps = args.steps or (20 if args.quick else 200)
    every = max(1, steps // 5)
    results: list[Any] = [run_seed(s, steps, every, args.out) for s in range(seeds)]
    read_steps = results[0][0]
    print(f"information gain of a thought (nats per continuation, mean over 12 colour facts): {seeds} seeds,"
          f" {steps} AdamW steps; mean [95% t-interval over seeds]")
    print(f"  {'step':>5s} " + " ".join(f"{k:>26s}" for k in KINDS) + f" {'helpful vs EMA baseline':>26s}")
    for j, step in enumerate(read_steps):
        cells = []
        for k in (*KINDS, "helpful_ema"):
            m, lo, hi = interval(np.array([r[1][k][j] for r in results]))
            cells.append(f"{m:8.2f} [{lo:7.2f},{hi:7.2f}]")
        print(f"  {step:5d} " + " ".join(f"{c:>26s}" for c in cells))


if __name__ == "__main__":
    main()
