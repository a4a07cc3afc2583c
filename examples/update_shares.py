"""Where the updates land, by layer: pretraining vs SFT on the tiny GPT, side by side.

For each seed, the same tiny GPT (2 blocks) is pretrained on the synthetic themed corpus (next-token
loss on every token), then fine-tuned on questions and answers about the facts (``"Q: colour of
sand? A: yellow."``, loss on the answer only), each stage with a fresh AdamW and its own
:class:`~probes.updates.probe.LayerUpdateProbe` (drift measured from the start of the stage).

It prints, per layer group, the mean share of ``||dW||^2`` in each stage (mean over readings,
then mean and min..max over seeds), the SFT - pretraining difference, and a control: each group's
share of the parameters (what a share proportional to size would be). Then the relative drift per
group at the end of each stage.

Run::

    python examples/update_shares.py              # 3 seeds, about a minute on 2 cores
    python examples/update_shares.py --quick      # 2 seeds, fewer steps (CI smoke)
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyGPT, corpus_loader
from probes.integrations.loop import ProbeLoop
from probes.updates.probe import LayerUpdateProbe
from probes.updates.spec import assign_groups
from probes.updates.view import compare_shares

CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)


def sft_batches(seed: int, steps: int, batch: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded Q/A batches, labels -100 except on the answer tokens."""
    tok = ByteTokenizer()
    facts = [(t.name, s, a) for t in THEMES for s, a in t.facts.items()]
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        rows = []
        for theme, subject, answer in (rng.choice(facts) for _ in range(batch)):
            q, a = tok.encode(f"Q: {theme} of {subject}? A:"), tok.encode(f" {answer}.")
            rows.append((q + a, [-100] * len(q) + a))
        width = max(len(r[0]) for r in rows)
        ids = torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows])
        labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        out.append((ids[:, :-1], labels[:, 1:]))  # position t predicts token t + 1
    return out


def stage(model: TinyGPT, batches: Any, name: str, out: Path) -> LayerUpdateProbe:
    probe = LayerUpdateProbe(name=name)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with ProbeLoop([probe], model, run_log=out / name) as loop:
        for ids, labels in batches:
            logits = model(ids)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), labels.reshape(-1), ignore_index=-100)
            loss.backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    return probe


def run(seeds: int, steps: int, out: Path) -> dict[str, Any]:
    per_seed = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = TinyGPT(CFG)
        loader = corpus_loader(n_windows=16 * steps, batch_size=16, block_size=64, seed=seed)
        pre = stage(model, ((b["input_ids"], b["labels"]) for b in loader), "pretrain", out / f"seed{seed}")
        sft = stage(model, sft_batches(seed, steps), "sft", out / f"seed{seed}")
        share = {s.source: np.stack([r.tensors["share"].numpy() for r in s.history]) for s in (pre, sft)}
        drift = {s.source: s.history[-1].tensors["drift_relative"].numpy() for s in (pre, sft)}
        per_seed.append((pre.groups, share, drift))
    groups = per_seed[0][0]
    named = list(TinyGPT(CFG).named_parameters())
    _, index = assign_groups([n for n, _ in named])
    sizes = np.bincount(index, weights=[p.numel() for _, p in named], minlength=len(groups))
    rows = [compare_shares((g, s["pretrain"]), (g, s["sft"])) for g, s, _ in per_seed]
    return {"groups": groups, "rows": rows, "param_share": sizes / sizes.sum(),
            "drift": [d for _, _, d in per_seed], "steps": steps, "seeds": seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/update_shares"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (2 if args.quick else 3)
    steps = args.steps or (20 if args.quick else 150)
    r = run(seeds, steps, args.out)
    print(f"update share of ||dW||^2 by layer group: {seeds} seeds, {steps} AdamW steps per stage (tiny GPT)")
    print(f"  {'group':10s} {'params':>7s} {'pretrain':>22s} {'SFT':>22s} {'SFT - pre':>22s}")
    for i, g in enumerate(r["groups"]):
        cells = []
        for key in ("share_a", "share_b", "difference"):
            v = np.array([rows[i][key] for rows in r["rows"]])
            cells.append(f"{v.mean():6.3f} [{v.min():6.3f},{v.max():6.3f}]")
        print(f"  {g:10s} {r['param_share'][i]:7.3f} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s}")
    print("relative drift ||W - W0|| / ||W0|| at the end of each stage (mean over seeds)")
    for i, g in enumerate(r["groups"]):
        pre = np.mean([d["pretrain"][i] for d in r["drift"]])
        sft = np.mean([d["sft"][i] for d in r["drift"]])
        print(f"  {g:10s} pretrain {pre:7.4f}   SFT {sft:7.4f}")


if __name__ == "__main__":
    main()
