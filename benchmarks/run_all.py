"""Run every benchmark and print one table of ratios measured side by side in this run.

Each ``benchmarks/bench_*.py`` module exposes ``run(quick: bool) -> dict`` and lists in
``RATIOS`` the keys that are ratios, as ``(key, description, target)``. The table is also
written as JSON.

Run: ``python benchmarks/run_all.py [--quick] [--json PATH] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

BENCHES = (
    "bench_keyword",
    "bench_engine",
    "bench_overhead",
    "bench_signals",
    "bench_frequency",
    "bench_runlog",
    "bench_formats",
    "bench_ddp",
)


def run_all(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    results: dict[str, Any] = {
        "quick": quick,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": torch.get_num_threads(),
        "benchmarks": {},
    }
    for name in BENCHES:
        if only and name not in only:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        raw = module.run(quick=quick)
        results["benchmarks"][name] = {
            "seconds": time.perf_counter() - t0,
            "raw": raw,
            "ratios": [
                {"key": key, "what": what, "target": target, "value": raw[key]} for key, what, target in module.RATIOS
            ],
        }
    return results


def table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "ratio", "value", "target")]
    for name, b in results["benchmarks"].items():
        for r in b["ratios"]:
            rows.append((name.removeprefix("bench_"), r["what"], f"{r['value']:.3g}", r["target"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings (CI smoke)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/latest.json"), help="where to write JSON")
    parser.add_argument("--only", nargs="*", choices=BENCHES, help="run only these benchmarks")
    args = parser.parse_args()
    results = run_all(args.quick, args.only)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
