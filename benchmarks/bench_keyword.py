"""KeywordProbe cost on the tiny reference LM with 256 probe pairs.

Prints two ratios, each measured side by side in one run (interleaved, medians):

* overhead / floor: time spent in the probe's ``on_before_optimizer_step`` during real training,
  divided by one bare no-grad forward over the very same padded probe tokens (target <= 1.25);
* naive / probe: a naive implementation (loop over pairs, one forward per pair, ``.item()`` per
  token, separate before and after passes) divided by the probe's per-step cost (target >= 5).

Run: ``python benchmarks/bench_keyword.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch

from probes import KeywordProbe
from probes.demos import THEMES, ByteTokenizer, TinyLM, corpus_loader

N_PAIRS = 256

RATIOS = [
    ("overhead_vs_floor", "KeywordProbe per-step cost / bare forward over the same tokens", "<= 1.25"),
    ("speedup_vs_naive", "naive per-pair loop with .item() and 2 passes / KeywordProbe", ">= 5"),
]


def probe_pairs(n: int = N_PAIRS) -> list[tuple[str, str, str]]:
    """n (context, keyword) pairs: every themed context with every attribute word of any theme."""
    attributes = sorted({a for t in THEMES for a in t.facts.values()})
    contexts = [t.context(s) for t in THEMES for s in t.facts]
    pairs = [(f"{c} -> {a}", c, a) for c in contexts for a in attributes]
    if len(pairs) < n:
        raise RuntimeError(f"only {len(pairs)} pairs available")
    return pairs[:n]


def naive_pass(model: torch.nn.Module, tokenized: list[tuple[list[int], list[int]]]) -> list[float]:
    """One pair at a time, full softmax, a host sync per token: what people write by hand."""
    out = []
    with torch.no_grad():
        for ctx, kw in tokenized:
            logits = model(torch.tensor([ctx + kw[:-1]]))[0]
            logp = torch.log_softmax(logits, dim=-1)
            total = 0.0
            for j, tok in enumerate(kw):
                total += logp[len(ctx) - 1 + j, tok].item()
            out.append(total)
    return out


class _TimedProbe(KeywordProbe):
    """KeywordProbe whose hook is timed, with the floor forward timed right next to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe_times: list[float] = []
        self.floor_times: list[float] = []

    def _floor(self, pl_module: pl.LightningModule) -> float:
        model = pl_module.model
        assert self.reader.plan is not None
        batches = self.reader.plan._tensors(torch.device("cpu"))
        was = model.training
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in batches:
                model(b["ids"], b.get("mask"))
        dt = time.perf_counter() - t0
        model.train(was)
        return dt

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # type: ignore[no-untyped-def]
        first = trainer.global_step % 2 == 0  # alternate the order to cancel drift
        if first:
            self.floor_times.append(self._floor(pl_module))
        t0 = time.perf_counter()
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.probe_times.append(time.perf_counter() - t0)
        if not first:
            self.floor_times.append(self._floor(pl_module))


def run(quick: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    steps = 20 if quick else 60
    tok = ByteTokenizer()
    pairs = probe_pairs()
    probe = _TimedProbe(pairs, tok, model="model", log_scalars=False)
    module = TinyLM()
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(module, corpus_loader(n_windows=16 * steps, batch_size=16, block_size=64))
    warm = 3
    probe_t = statistics.median(probe.probe_times[warm:])
    floor_t = statistics.median(probe.floor_times[warm:])

    # naive vs probe, interleaved on the trained model
    tokenized = [(list(it.context), list(it.target)) for it in probe.items]
    model = module.model.eval()
    naive_ts, probe_ts = [], []
    for _ in range(1 if quick else 2):
        t0 = time.perf_counter()
        naive_pass(model, tokenized)  # "before" reading
        naive_pass(model, tokenized)  # separate "after" reading
        naive_ts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        probe.read(module)
        probe_ts.append(time.perf_counter() - t0)
    plan = probe.reader.plan
    assert plan is not None
    result = {
        "pairs": float(len(pairs)),
        "forward_rows": float(plan.n_rows),
        "forward_tokens": float(plan.n_forward_tokens),
        "probe_ms_per_step": probe_t * 1e3,
        "floor_ms": floor_t * 1e3,
        "overhead_vs_floor": probe_t / floor_t,
        "naive_ms_per_step": statistics.median(naive_ts) * 1e3,
        "speedup_vs_naive": statistics.median(naive_ts) / statistics.median(probe_ts),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (CI smoke)")
    r = run(quick=parser.parse_args().quick)
    print(
        f"KeywordProbe, tiny LM, {int(r['pairs'])} pairs -> {int(r['forward_rows'])} rows,"
        f" {int(r['forward_tokens'])} padded tokens per pass"
    )
    print(f"  probe per step       {r['probe_ms_per_step']:8.2f} ms")
    print(f"  floor (bare forward) {r['floor_ms']:8.2f} ms")
    print(f"  naive per step       {r['naive_ms_per_step']:8.2f} ms")
    print(f"  overhead / floor     {r['overhead_vs_floor']:8.2f}x   (target <= 1.25)")
    print(f"  naive / probe        {r['speedup_vs_naive']:8.1f}x   (target >= 5)")


if __name__ == "__main__":
    main()

