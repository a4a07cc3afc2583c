"""Frequency or similarity? A controlled 2 x 2 experiment on the tiny byte-level LM.

Keywords seen often but only among unrelated words (``F+S-``), seen rarely but in near-paraphrases
of the probe (``F-S+``), both (``F+S+``) and neither (``F-S-``), with equal token budgets per item
(:mod:`probes.demos.frequency_study`). A :class:`~probes.frequency.probe.FrequencyProbe` measures
keyword counts and similarity online; the gain of an item is the change of its keyword
log-probability (natural log) from step 0 to the end. Prints, over seeds:

1. per cell: the measured keyword count, accumulated similarity (lex_sum, lex_above, rep_sum), the
   token budget and the mean gain, with a 95% t-interval over seeds;
2. the design contrasts of the gain (main effects of frequency and similarity, interaction), with
   95% t-intervals over seeds;
3. the attribution over items (standardized coefficients and partial correlations of the gain on
   log(1 + keyword count) and each accumulated similarity), mean over seeds with t-intervals;
4. which variable explains the gain: the one whose main-effect interval excludes 0 (and whether the
   interaction's interval does).

Usage::

    python examples/frequency_vs_similarity.py              # 5 seeds x 24 items, a few minutes on 2 cores
    python examples/frequency_vs_similarity.py --quick      # 2 seeds x 12 items, 3 passes (< 60 s)
    python examples/frequency_vs_similarity.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from scipy import stats

from probes.demos.frequency_study import CONDITIONS, run_study


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (NaN interval for one seed)."""
    v = [float(x) for x in values]
    mean = statistics.fmean(v)
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def fmt(ci: tuple[float, float, float]) -> str:
    m, lo, hi = ci
    return f"{m:+8.3f} [{lo:+.3f}, {hi:+.3f}]"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3 items per cell, 3 passes")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 2)")
    parser.add_argument("--json", default=None, help="write every number printed to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n_seeds = args.seeds or (2 if args.quick else 5)
    config = dict(per_condition=3, epochs=3, n_boot=300) if args.quick else dict(per_condition=6, epochs=8)
    runs = [run_study(seed, **config) for seed in range(n_seeds)]
    print(f"frequency vs similarity: {n_seeds} seeds, {len(runs[0]['items'])} items per seed,"
          f" {runs[0]['steps']} optimizer steps per seed")
    print("\n1. per cell (mean over items, then mean and 95% t-interval over seeds)")
    print(f"   {'cell':<6} {'bytes':>6} {'kw rows':>7} {'keyword count':>14} {'lex_sum':>9} {'lex_above':>9}"
          f" {'rep_sum':>9}"
          "   gain delta logp (nats)")
    cells = {}
    for c in CONDITIONS:
        per = {m: [r["cells"][c][m] for r in runs]
               for m in ("keyword_count", "lex_sum", "lex_above", "rep_sum", "delta_logp")}
        cells[c] = {m: t_interval(v) for m, v in per.items()}
        b = runs[0]["cells"][c]
        print(f"   {c:<6} {b['bytes']:>6} {b['keyword_rows']:>7} {cells[c]['keyword_count'][0]:>14.1f}"
              f" {cells[c]['lex_sum'][0]:>9.2f} {cells[c]['lex_above'][0]:>9.2f} {cells[c]['rep_sum'][0]:>9.2f}"
              f"   {fmt(cells[c]['delta_logp'])}")
    print("\n2. design contrasts of the gain (nats), mean and 95% t-interval over seeds")
    contrast = {k: t_interval([r["contrasts"][k] for r in runs]) for k in ("frequency", "similarity", "interaction")}
    for k, ci in contrast.items():
        print(f"   {k:<12} {fmt(ci)}")
    print("\n3. attribution over items (per seed, then mean and 95% t-interval over seeds)")
    attribution = {}
    for sim in ("lex_sum", "lex_above", "rep_sum"):
        attribution[sim] = {}
        for q in ("beta_frequency", "beta_similarity", "partial_frequency", "partial_similarity"):
            vals = [r["attribution"][sim]["estimates"][q] for r in runs]
            vals = [v for v in vals if v is not None]
            attribution[sim][q] = t_interval(vals) if vals else (math.nan,) * 3
            print(f"   {sim:<9} {q:<20} {fmt(attribution[sim][q])}")
        per_seed = [r["attribution"][sim]["explains"] for r in runs]
        print(f"   {sim:<9} per-seed bootstrap verdicts: {', '.join(per_seed)}")

    def excludes_zero(ci: tuple[float, float, float]) -> bool:
        return math.isfinite(ci[1]) and (ci[1] > 0 or ci[2] < 0)

    f, s = excludes_zero(contrast["frequency"]), excludes_zero(contrast["similarity"])
    verdict = "both" if f and s else "frequency" if f else "similarity" if s else "neither (intervals include 0)"
    seconds = time.perf_counter() - t0
    interaction = "excludes 0" if excludes_zero(contrast["interaction"]) else "includes 0"
    print(f"\n4. explains the gain (main-effect interval excludes 0): {verdict}; interaction interval {interaction}")
    print(f"\ntime {seconds:.1f} s")
    out = {"seeds": n_seeds, "quick": args.quick, "cells": cells, "contrasts": contrast, "attribution": attribution,
           "verdict": verdict, "interaction": interaction, "seconds": seconds, "runs": runs}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
