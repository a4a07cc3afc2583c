"""``probes demo``: train the embedded tiny model with the probes attached and show what they saw."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from probes.cli.common import add_debug_argument


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the embedded demo on the tiny reference LM (CPU, no downloads)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps of the language model")
    p.add_argument(
        "--quick", action="store_true", help="the same language-model phase, a shorter RL phase (about 40 seconds)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="directory for the run logs (default: runs/demo-<date>-<time>)"
    )
    p.add_argument("--no-live", action="store_true", help="plain output: no live display or progress bar")
    add_debug_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from probes.demos.main_job import DemoConfig, quick_config, run_demo

    cfg = quick_config() if args.quick else DemoConfig()
    if args.steps is not None:
        if args.steps < 1:
            print(f"error: --steps must be a positive integer, got {args.steps}", file=sys.stderr)
            return 2
        cfg.pretrain_steps = args.steps
    cfg.out = args.out if args.out is not None else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    cfg.live = not args.no_live
    try:
        run_demo(cfg)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
