"""FormatProbe: the scored (exact, sampling-free) format distribution versus sampled estimates.

On the toy arithmetic task (a tiny byte-level GPT pretrained on a 70/30 mix of ``"= 7"`` and
``"ans: 7"`` answers), for the same 25 prompts, in one run:

* the scored distribution: P("=" | prompt) and P("ans:" | prompt), averaged over prompts, plus the
  remaining mass as "other" (one batched no-grad pass);
* sampled estimates with n = 1, 2, 4, ... completions per prompt (the built-in sampler,
  temperature 1, top-p 1, 4 new tokens: just enough to classify ``"ans:"``), each with its own seed.

Reports the samples sampling needs to get within 0.02 of the exact distribution (largest absolute
error over the three buckets, at that n and every larger n of the schedule), and the ratio of the
wall time of that sampled estimate to the scored pass (medians of interleaved repetitions).

Run: ``python benchmarks/bench_formats.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch

from probes.callbacks import FormatProbe
from probes.demos import ByteTokenizer
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, pretrain_policy
from probes.formats.sampling import SamplerConfig

TOLERANCE = 0.02

RATIOS = [
    ("time_ratio", "sampled estimate within 0.02 / scored pass, wall time", ">= 1 (scored is cheaper)"),
    ("samples_needed_total", "completions sampling needs to get within 0.02 of the exact distribution", "info"),
]


class _Holder(pl.LightningModule):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model


def _timed(fn: Any, repeats: int) -> tuple[Any, float]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    task = ArithmeticTask()
    module = _Holder(pretrain_policy(task, steps=300))
    tok = ByteTokenizer()
    prompts = task.prompts
    scored = FormatProbe(ARITHMETIC_FORMATS, mode="scored", prompts=prompts, tokenizer=tok, model="model")
    scored.read(module)  # warm-up: builds the plan and device index tensors once
    repeats = 3 if quick else 7
    tally, scored_s = _timed(lambda: scored.read(module), repeats)
    exact = scored.metrics(tally)["dist"].double()

    max_n = 128 if quick else 1024
    schedule, n = [], 1
    while n <= max_n:
        schedule.append(n)
        n *= 2
    rows = []
    for i, n in enumerate(schedule):
        cfg = SamplerConfig(temperature=1.0, top_p=1.0, max_new_tokens=4, seed=1000 + i, batch_size=512)
        sampled = FormatProbe(
            ARITHMETIC_FORMATS, mode="sampled", prompts=prompts, tokenizer=tok, model="model", n_samples=n, sampler=cfg
        )
        # interleave a scored pass with every sampled repetition, so both see the same machine load
        s_times, c_times, est = [], [], None
        for _ in range(1 if n >= 256 else repeats):
            start = time.perf_counter()
            est = sampled.metrics(sampled.read(module))["dist"].double()
            s_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            scored.read(module)
            c_times.append(time.perf_counter() - start)
        err = float((est - exact).abs().max())
        rows.append(
            {
                "n_per_prompt": n,
                "total_samples": n * len(prompts),
                "max_abs_err": err,
                "sampled_s": statistics.median(s_times),
                "scored_s": statistics.median(c_times),
                "estimate": est.tolist(),
            }
        )
    needed = None
    for i, row in enumerate(rows):
        if all(r["max_abs_err"] <= TOLERANCE for r in rows[i:]):
            needed = row
            break
    # the scored pass is ~ms: pool every interleaved timing for a stable denominator
    scored_all = statistics.median([scored_s] + [r["scored_s"] for r in rows])
    # binomial reference: completions for a 95% interval of +-TOLERANCE on the least certain bucket
    # (pooled over prompts, which over-estimates the variance of the per-prompt stratified sample)
    worst = float((exact * (1 - exact)).max())
    binomial_95 = math.ceil(1.96**2 * worst / TOLERANCE**2)
    return {
        "prompts": len(prompts),
        "exact_dist": exact.tolist(),
        "scored_s": scored_all,
        "tolerance": TOLERANCE,
        "schedule": rows,
        "samples_needed_per_prompt": needed["n_per_prompt"] if needed else math.inf,
        "samples_needed_total": needed["total_samples"] if needed else math.inf,
        "time_ratio": needed["sampled_s"] / scored_all if needed else math.inf,
        "binomial_samples_95": binomial_95,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small schedule (CI smoke)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return
    d = result["exact_dist"]
    print(f"exact distribution over {result['prompts']} prompts: '=' {d[0]:.4f}  'ans:' {d[1]:.4f}  other {d[2]:.4f}")
    print(f"scored pass: {result['scored_s'] * 1e3:.2f} ms")
    print(" n/prompt  samples  max |err|  sampled ms  scored ms")
    for r in result["schedule"]:
        print(
            f" {r['n_per_prompt']:8d} {r['total_samples']:8d}  {r['max_abs_err']:9.4f}"
            f"  {r['sampled_s'] * 1e3:10.2f} {r['scored_s'] * 1e3:10.2f}"
        )
    print(
        f"samples needed to get within {result['tolerance']}: {result['samples_needed_per_prompt']} per prompt"
        f" ({result['samples_needed_total']} in all); time ratio sampled/scored: {result['time_ratio']:.1f}x"
    )
    tol, n95 = result["tolerance"], result["binomial_samples_95"]
    print(f"(binomial reference for a 95% interval of +-{tol}: {n95} samples)")


if __name__ == "__main__":
    main()
