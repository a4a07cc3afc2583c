"""Cost per reading of the three signal probes, each as a ratio to one training step, side by side.

One torch thread, the tiny reference LM (``TinyGPT`` with the demo's ``GPTConfig``), batch 16 x 64,
AdamW, a plain loop. Every step is timed in parts (interleaved, medians after a warm-up):

* the training step alone: forward, backward, ``optimizer.step()`` (the hooks of the update probe
  off on alternate steps, so the bare step and the step with the hooks are measured side by side);
* LayerUpdateProbe: the optimizer step with its hooks minus the bare optimizer step;
* ThoughtGainProbe (28 triples, 56 scored items) and RefinementProbe (28 samples, 8 items each):
  the reading (``take_reading``: the probe's scoring pass and its arithmetic), each probe on its own
  hub so that the costs are not shared.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_signals.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from probes.core.context import TrainingContext
from probes.core.hub import Hubs
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyGPT, corpus_loader
from probes.frontier.probe import RefinementProbe
from probes.thought.probe import ThoughtGainProbe
from probes.updates.probe import LayerUpdateProbe

RATIOS = [
    ("updates_vs_step", "LayerUpdateProbe cost per reading / training step", "report"),
    ("thought_vs_step", "ThoughtGainProbe (28 triples) reading / training step", "report"),
    ("frontier_vs_step", "RefinementProbe (28 samples) reading / training step", "report"),
]


def _facts() -> list[tuple[str, str, str]]:
    return [(f"{t.name}:{s}", t.context(s), a) for t in THEMES for s, a in t.facts.items()]


def run(quick: bool = False) -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> dict[str, float]:
    torch.manual_seed(0)
    steps = 12 if quick else 40
    tok = ByteTokenizer()
    model = TinyGPT(GPTConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    facts = _facts()
    thought = ThoughtGainProbe([(n, ". ", f"{c} {a}.", f"{c} {a}") for n, c, a in facts], tok, log_scalars=False)
    frontier = RefinementProbe([(n, c, a, f"{a}, as everyone knows") for n, c, a in facts], tok, prefix=". ",
                               log_scalars=False)
    updates = LayerUpdateProbe(log_scalars=False, every_n_steps=1)
    loader = iter(corpus_loader(n_windows=16 * (steps + 1), batch_size=16, block_size=64))
    timing: dict[str, list[float]] = {k: [] for k in ("fwd_bwd", "opt_bare", "opt_hooked", "thought", "frontier")}
    hubs = {"thought": Hubs(), "frontier": Hubs()}  # each probe on its own hub: costs not shared
    probes = {"thought": thought, "frontier": frontier}
    for name, probe in probes.items():
        probe.attach(TrainingContext(model, step=0, hubs=hubs[name]))
    updates.attach(TrainingContext(model, step=0))
    for step in range(steps):
        batch = next(loader)
        t0 = time.perf_counter()
        logits = model(batch["input_ids"])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))
        loss.backward()
        timing["fwd_bwd"].append(time.perf_counter() - t0)
        hooked = step % 2 == 1  # alternate bare and hooked optimizer steps
        ctx = TrainingContext(model, step=step, optimizers=(opt,) if hooked else ())
        if hooked:
            updates.before_optimizer_step(ctx)
        t2 = time.perf_counter()
        opt.step()
        timing["opt_hooked" if hooked else "opt_bare"].append(time.perf_counter() - t2)
        opt.zero_grad()
        if hooked:
            updates.training_ended(ctx)  # unhook: the next step is bare
        order = ["thought", "frontier"] if step % 2 == 0 else ["frontier", "thought"]
        for name in order:
            t4 = time.perf_counter()
            probes[name].take_reading(TrainingContext(model, step=step, hubs=hubs[name]))
            timing[name].append(time.perf_counter() - t4)
    assert [r.step for r in updates.history] == list(range(2, steps + 1, 2))  # every hooked update recorded
    warm = 2

    def med(key: str) -> float:
        return statistics.median(timing[key][warm:])

    step_t = med("fwd_bwd") + med("opt_bare")
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    upd = max(med("opt_hooked") - med("opt_bare"), 0.0)
    return {
        "step_ms": step_t * 1e3,
        "updates_ms": upd * 1e3,
        "thought_ms": med("thought") * 1e3,
        "frontier_ms": med("frontier") * 1e3,
        "updates_vs_step": upd / step_t,
        "thought_vs_step": med("thought") / step_t,
        "frontier_vs_step": med("frontier") / step_t,
        "thought_items": float(len(thought.requests)),
        "param_mb": param_bytes / 2**20,
        "updates_copy_mb": updates.copy_bytes / 2**20,
        "updates_reference_mb": updates.reference_bytes / 2**20,
        "frontier_items": float(len(frontier.requests)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (CI smoke)")
    r = run(quick=parser.parse_args().quick)
    print("signal probes, tiny LM (TinyGPT, GPTConfig()), batch 16x64, AdamW, 1 torch thread")
    print(f"  training step (fwd+bwd+opt) {r['step_ms']:8.2f} ms")
    print(f"  LayerUpdateProbe per update {r['updates_ms']:8.2f} ms   ratio {r['updates_vs_step']:.3f}")
    print(f"  LayerUpdateProbe memory: parameters {r['param_mb']:.2f} MiB; temporary copy during a recorded step"
          f" {r['updates_copy_mb']:.2f} MiB; drift reference for the stage {r['updates_reference_mb']:.2f} MiB")
    print(f"  ThoughtGainProbe per reading {r['thought_ms']:7.2f} ms   ratio {r['thought_vs_step']:.3f}"
          f"   ({int(r['thought_items'])} items)")
    print(f"  RefinementProbe per reading {r['frontier_ms']:8.2f} ms   ratio {r['frontier_vs_step']:.3f}"
          f"   ({int(r['frontier_items'])} items)")


if __name__ == "__main__":
    main()
