"""The RL format study behind docs/science.md: amplification of the dominant format, or of the accurate one?

Crosses the answer accuracy of each pretraining format (majority more accurate, equal, minority
more accurate), a shuffled-reward control and a KL penalty, over seeds and two policy sizes (see
:mod:`probes.demos.rl_study`). Prints one row per condition and size: the exact share of ``"="``
among the two formats before and after RL (scored FormatProbe on all 25 prompts; mean over seeds
with a 95% Student-t interval), how many runs collapsed (rollout FormatProbe, share >= 0.95 for 3
records) and onto which format, and the collapse steps.

Usage::

    python examples/rl_format_study.py            # 5 conditions x 2 sizes x 3 seeds, ~30 min on 2 cores
    python examples/rl_format_study.py --quick    # CI: 2 conditions, small model, 1 seed, 40 steps
    python examples/rl_format_study.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import torch

from probes.demos.rl_study import CONDITIONS, format_rl_table, run_rl_study, summarize_rl


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI form: 2 conditions, 1 seed, 40 steps")
    parser.add_argument("--conditions", nargs="+", default=None, choices=sorted(CONDITIONS))
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick 1)")
    parser.add_argument("--sizes", nargs="+", default=None, choices=["small", "large"])
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default 150; quick 40)")
    parser.add_argument("--json", default=None, help="also write the rows (and every run) to this JSON file")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)  # tiny models: one thread is fastest and timings are comparable
    for pattern in (".*does not have many workers.*", ".*litlogger.*", ".*treespec.*", ".*GPU available.*"):
        warnings.filterwarnings("ignore", message=pattern)
    conditions = args.conditions or (["equal_accuracy", "minority_accurate"] if args.quick else list(CONDITIONS))
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    sizes = args.sizes or (["small"] if args.quick else ["small", "large"])
    steps = args.steps or (40 if args.quick else 150)
    print(f"RL format study: {len(conditions)} conditions x {len(sizes)} sizes x {len(seeds)} seeds, {steps} steps")
    start = time.perf_counter()
    runs = run_rl_study(conditions, seeds, sizes, steps=steps)
    rows = summarize_rl(runs)
    print()
    print(format_rl_table(rows))
    print(f"(share '=' = exact P('=') / (P('=') + P('ans:')) over all prompts; 70% of pretraining answers use '=';"
          f" collapse: rollout share >= 0.95 for 3 records; {time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
