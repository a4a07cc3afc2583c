"""The controlled priming study behind docs/science.md (Sun et al. 2025, arXiv 2504.09522).

48 learning samples over 4 themes whose keywords span P_before through controlled pretraining
frequency (40 in the corpus, 8 never seen; :mod:`probes.demos.priming_study`), each learned
separately from the same pretrained tiny LM under five variants: 3 spaced presentations
(``plain``), 10 (``long``), ``plain`` with IgnoreTopK, ``plain`` with stepping-stone text, and a
``control`` that continues training without the sample. Prints:

1. how pretraining frequency set P_before (median log10 P_before per level);
2. correlations of log10 P_before with priming, for in-corpus and never-seen keywords separately,
   as a ratio (log10 S_prime) and as an absolute change (delta P_prime), chained and first-token,
   with 95% bootstrap intervals;
3. the best P_before threshold as a sweep over the priming cut-off, with intervals;
4. the remedies against plain injection and against the control: median log10 S_prime / S_mem and
   paired differences with bootstrap intervals.

Usage::

    python examples/priming_study.py            # 48 samples x 5 variants, ~15 min on 2 cores
    python examples/priming_study.py --quick    # CI: 8 samples, 3 variants, smaller model (~1 min)
    python examples/priming_study.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from probes.analysis import correlation_ci, threshold_sweep
from probes.demos.priming_study import VARIANTS, learn_sample, pretrain_study_model, study_samples
from probes.demos.tiny_gpt import GPTConfig

QUICK_CONFIG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)


def paired_ci(diffs: Sequence[float], *, n_bootstrap: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median of paired differences with a percentile-bootstrap 95% interval."""
    d = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = [float(np.median(d[rng.integers(0, d.size, d.size)])) for _ in range(n_bootstrap)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(np.median(d)), float(lo), float(hi)


def correlations(rows: list[dict[str, Any]], variant: str, n_bootstrap: int) -> list[dict[str, Any]]:
    out = []
    groups = (("in-corpus", lambda r: r["level"] != "never"), ("never-seen", lambda r: r["level"] == "never"))
    for group, keep in groups:
        sel = [r for r in rows if r["variant"] == variant and keep(r)]
        if len(sel) < 3:
            continue
        for mode in ("seq", "first"):
            x = [r[f"log10_p_before_{mode}"] for r in sel]
            for what, key in (("log10 S_prime (ratio)", f"log10_s_prime_{mode}"), ("dP_prime (difference)",
                                                                                     f"delta_p_prime_{mode}")):
                c = correlation_ci(x, [r[key] for r in sel], method="spearman", n_bootstrap=n_bootstrap)
                out.append({"variant": variant, "group": group, "mode": mode, "against": what, "n": c.n,
                            "rho": c.r, "ci": c.ci, "p": c.p})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI form: 8 samples, 3 variants, a smaller model")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default 600 (quick 250)")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 2000; quick 200)")
    parser.add_argument("--json", default=None, help="write every run and every table to this JSON file")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)  # tiny models: one thread is fastest on 2 busy cores
    warnings.filterwarnings("ignore")
    n_boot = args.bootstrap or (200 if args.quick else 2000)
    config = QUICK_CONFIG if args.quick else None
    items, _ = study_samples()
    if args.quick:  # two per theme: the first frequent made-up keyword and the first never-seen one
        items = [next(it for it in items if it.theme == t and it.level == lv)
                 for t in dict.fromkeys(it.theme for it in items) for lv in ("f60", "never")]
    variants = ("plain", "stepping_stones", "control") if args.quick else VARIANTS
    start = time.perf_counter()
    weights, opt_state, loss = pretrain_study_model(args.pretrain_steps or (250 if args.quick else 600),
                                                    config=config)
    print(f"pretrained on the study corpus, final loss {loss:.3f} ({time.perf_counter() - start:.0f} s);"
          f" {len(items)} samples x {len(variants)} variants")
    rows = []
    for it in items:
        for v in variants:
            rows.append(learn_sample(it, v, weights, opt_state, config=config))
    plain = [r for r in rows if r["variant"] == "plain"]

    print("\n1. pretraining frequency -> P_before (median log10 P_before, chained | first token)")
    levels = list(dict.fromkeys(r["level"] for r in plain))
    freq = []
    for lv in levels:
        sel = [r for r in plain if r["level"] == lv]
        freq.append({"level": lv, "n": len(sel),
                     "median_log10_p_before_seq": statistics.median(r["log10_p_before_seq"] for r in sel),
                     "median_log10_p_before_first": statistics.median(r["log10_p_before_first"] for r in sel)})
        print(f"   {lv:7s} n={len(sel):2d}  {freq[-1]['median_log10_p_before_seq']:8.2f} |"
              f" {freq[-1]['median_log10_p_before_first']:8.2f}")

    print("\n2. Spearman correlation of log10 P_before with priming (95% bootstrap interval)")
    corr = []
    for v in ("plain", "long"):
        if any(r["variant"] == v for r in rows):
            corr += correlations(rows, v, n_boot)
    for c in corr:
        lo, hi = c["ci"]
        print(f"   {c['variant']:6s} {c['group']:10s} {c['mode']:5s} vs {c['against']:22s} rho {c['rho']:+.2f}"
              f" [{lo:+.2f}, {hi:+.2f}] (n={c['n']}, p={c['p']:.2g})")

    print("\n3. best threshold on P_before by priming cut-off (plain, in-corpus, chained; 95% bootstrap)")
    incorpus = [r for r in plain if r["level"] != "never"]
    sweep = threshold_sweep([r["log10_p_before_seq"] for r in incorpus], [r["log10_s_prime_seq"] for r in incorpus],
                            [0.1, 0.3, 1.0, 2.0, 3.0], n_bootstrap=n_boot)
    for s in sweep:
        lo, hi = s["log10_threshold_ci"]
        blo, bhi = s["balanced_accuracy_ci"]
        print(f"   S_prime > 10^{s['log10_cut']:<4g} primed {s['n_primed']:2d}/{s['n']:2d}:"
              f" log10 threshold {s['log10_threshold']:6.2f} [{lo:6.2f}, {hi:6.2f}],"
              f" balanced accuracy {s['balanced_accuracy']:.2f} [{blo:.2f}, {bhi:.2f}]")

    print("\n4. remedies (median over samples; paired median difference vs plain, 95% bootstrap)")
    by = {(r["name"], r["variant"]): r for r in rows}
    names = list(dict.fromkeys(r["name"] for r in rows))
    remedies = []
    for v in variants:
        sel = [by[(n, v)] for n in names]
        row: dict[str, Any] = {"variant": v}
        for key in ("log10_s_prime_seq", "log10_s_mem_seq", "log10_s_prime_first", "log10_s_mem_first"):
            row[key] = statistics.median(r[key] for r in sel)
            if v != "plain":
                row[f"diff_{key}"] = paired_ci([by[(n, v)][key] - by[(n, "plain")][key] for n in names],
                                               n_bootstrap=n_boot)
        remedies.append(row)
        extra = ""
        if v != "plain":
            m, lo, hi = row["diff_log10_s_prime_seq"]
            mm, mlo, mhi = row["diff_log10_s_mem_seq"]
            extra = f" | vs plain: S_prime {m:+.2f} [{lo:+.2f}, {hi:+.2f}], S_mem {mm:+.2f} [{mlo:+.2f}, {mhi:+.2f}]"
        print(f"   {v:15s} log10 S_prime {row['log10_s_prime_seq']:6.2f}  log10 S_mem {row['log10_s_mem_seq']:6.2f}"
              f"{extra}")
    seconds = time.perf_counter() - start
    print(f"\n(chained = logp_seq of ' keyword'; first = its first token, the space byte; {seconds:.0f} s)")
    result = {"rows": rows, "frequency": freq, "correlations": corr, "threshold_sweep": sweep, "remedies": remedies,
              "seconds": seconds}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else o)
    return result


if __name__ == "__main__":
    main()
