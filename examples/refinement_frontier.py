"""Teacher refinements inside vs far outside the student's distribution, over pretraining.

The student is the tiny GPT pretrained on the synthetic themed corpus (lower-case sentences such as
``"the colour of sand is yellow"``). For each of the 28 facts, the instruction
``"Q: colour of sand?"`` has the original response ``"A: yellow"`` and two refinements a teacher
might write:

* inside the student's distribution: ``"A: the colour of sand is yellow"`` (the corpus's own words);
* far outside it: ``"A: Sand Exhibits A Predominantly YELLOW Colour!"`` (capitals, words and
  punctuation the corpus never contains; the same template for every fact).

A :class:`~probes.frontier.probe.RefinementProbe` per group reads the student's IFD and r-IFD of both
responses and the accept decision of Selective Reflection-Tuning (refined r-IFD below the
original's, and refined IFD < 1 and r-IFD < 1). It prints, per reading, the accepted fraction and
the mean r-IFD difference (refined - original) of each group, as mean over seeds with a 95%
t-interval across seeds.

Run::

    python examples/refinement_frontier.py              # 3 seeds, about a minute on 2 cores
    python examples/refinement_frontier.py --quick      # CI smoke setting
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyGPT, corpus_loader
from probes.frontier.probe import RefinementProbe
from probes.integrations.loop import ProbeLoop

CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=96)
GROUPS = ("inside", "outside")


def samples(group: str) -> list[tuple[str, str, str, str]]:
    out = []
    for t in THEMES:
        for subject, attr in t.facts.items():
            q = f"Q: {t.name} of {subject}?"
            refined = (f"A: {t.sentence(subject, attr)}" if group == "inside"
                       else f"A: {subject.title()} Exhibits A Predominantly {attr.upper()} {t.name.title()}!")
            out.append((f"{t.name}/{subject}", q, f"A: {attr}", refined))
    return out


def run_seed(seed: int, steps: int, every: int, out: Path) -> dict[str, dict[str, np.ndarray]]:
    torch.manual_seed(seed)
    model = TinyGPT(CFG)
    tok = ByteTokenizer()
    probes = [RefinementProbe(samples(g), tok, name=g, prefix=". ", reverse_template="{answer}. ", every_n_steps=every)
              for g in GROUPS]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = corpus_loader(n_windows=16 * steps, batch_size=16, block_size=64, seed=seed)
    with ProbeLoop(probes, model, run_log=out / f"seed{seed}") as loop:
        for b in loader:
            logits = model(b["input_ids"])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), b["labels"].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    result = {}
    for p in probes:
        steps_read, accepted = p.series("accepted")
        result[p.source] = {
            "steps": np.array(steps_read),
            "accepted": accepted.float().mean(dim=1).numpy(),
            "d_r_ifd": p.series("d_r_ifd")[1].double().mean(dim=1).numpy(),
            "preferred": p.series("preferred")[1].float().mean(dim=1).numpy(),
        }
    return result


def interval(values: np.ndarray) -> str:
    m = float(values.mean())
    if len(values) < 2:
        return f"{m:6.3f}"
    h = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return f"{m:6.3f} [{m - h:6.3f},{m + h:6.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/refinement_frontier"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (2 if args.quick else 3)
    steps = args.steps or (20 if args.quick else 200)
    results = [run_seed(s, steps, max(1, steps // 5), args.out) for s in range(seeds)]
    print(f"refinements accepted by the student (28 facts per group): {seeds} seeds, {steps} AdamW steps;"
          " mean [95% t-interval over seeds]")
    head = "".join(f"{g + ' ' + m:>26s}" for g in GROUPS for m in ("accepted", "d r-IFD"))
    print(f"  {'step':>5s}{head}")
    for j, step in enumerate(results[0]["inside"]["steps"]):
        cells = "".join(f"{interval(np.array([r[g][m][j] for r in results])):>26s}"
                        for g in GROUPS for m in ("accepted", "d_r_ifd"))
        print(f"  {int(step):5d}{cells}")


if __name__ == "__main__":
    main()
