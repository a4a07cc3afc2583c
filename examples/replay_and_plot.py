"""Read a saved run log back: summary, CSV export, plots and a replay on the live dashboard.

Given a run directory (written by ``RunLog``, ``probes demo`` or ``examples/sft_hf_gpt2.py --out``),
this opens it with :func:`probes.open_run` and does with library calls what the ``probes`` command
does: ``probes summary`` (:func:`probes.runlog.summary.summarize`), ``probes export --csv``
(:func:`probes.cli.export.export_csv`), ``probes plot`` (:func:`probes.cli.plot.build_figure`)
and ``probes replay`` on the live dashboard (:func:`probes.console.replay`). Without an argument it
first makes a small run: the tiny byte-level LM trained on the synthetic corpus with a
KeywordProbe and a RunLog, into a temporary directory.

On a terminal the replay redraws the dashboard ``--speed`` readings per second; elsewhere (a pipe,
CI) it prints the final dashboard once.

Usage::

    python examples/replay_and_plot.py                    # train 200 steps, then read the log back
    python examples/replay_and_plot.py --quick            # CI smoke setting (60 steps)
    python examples/replay_and_plot.py runs/demo/lm --out report/   # an existing run log
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch

from probes import KeywordProbe, RunLog, open_run
from probes.cli.export import export_csv
from probes.cli.plot import build_figure
from probes.cli.summary import render_summary
from probes.console import replay
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.runlog.summary import summarize


def make_run(run_dir: Path, steps: int) -> None:
    """Train the tiny LM for ``steps`` steps with a KeywordProbe streamed to a run log."""
    pl.seed_everything(0, verbose=False)
    pairs = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES for s, a in list(t.facts.items())[:2]]
    pairs.append(("false:sand/purple", "the colour of sand is", "purple", "false"))
    callbacks = [KeywordProbe(pairs, ByteTokenizer(), model="model"), RunLog(run_dir, run_info={"example": "replay"})]
    trainer = pl.Trainer(max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    module = TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))
    trainer.fit(module, corpus_loader(n_windows=steps * 16, batch_size=16))
    print(f"trained {steps} steps (loss {module.losses[0]:.2f} -> {module.losses[-1]:.2f}), run log in {run_dir}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, nargs="?", default=None, help="run directory (default: make a small one)")
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for the CSV files, the plot (and the run made without RUN)"
    )
    parser.add_argument("--speed", type=float, default=100.0, help="replay speed, readings per second (default 100)")
    parser.add_argument("--quick", action="store_true", help="CI smoke setting: a 60-step run when none is given")
    parser.add_argument("--steps", type=int, default=None, help="steps of the run made without RUN (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for tiny models)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
    out = args.out or Path(tempfile.mkdtemp(prefix="replay_and_plot-"))
    run_dir = args.run
    if run_dir is None:
        run_dir = out / "run"
        make_run(run_dir, args.steps or (60 if args.quick else 200))

    # 1. open the log: sources, metrics, arrays (a lazy, memory-mapped reader; never unpickles)
    run = open_run(run_dir)
    print(f"\n{run_dir}: status {run.status}, sources {run.sources()}, last step {run.last_step()}")

    # 2. `probes summary`: final and extreme values, keyword pairs by change, collapse events ...
    print(render_summary(summarize(run, limit=8)))

    # 3. `probes export --csv`: one CSV per source, columns metric[label] (floats round-trip exactly)
    out.mkdir(parents=True, exist_ok=True)
    for source in run.sources():
        rows, cols = export_csv(run, source, out / f"{source}.csv")
        print(f"wrote {out / f'{source}.csv'}: {rows} rows x {cols} columns")

    # 4. `probes plot`: keyword curves, priming scatter, format distribution (needs matplotlib)
    try:
        figure = build_figure(run)
    except ImportError:
        print("no plot: matplotlib is missing; install it with: pip install 'probes[plot]'")
    else:
        if figure is None:
            print("no plot: the run has no keyword, priming or format source")
        else:
            figure.savefig(out / "plot.png", dpi=80)
            print(f"wrote {out / 'plot.png'} ({len(figure.axes)} panels)")

    # 5. `probes replay`, on the live dashboard: records in step order plus each probe's definition
    dashboard = replay(run.records(), run.describes, speed=args.speed)
    print(f"replayed {run_dir}: {dashboard.summary_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
