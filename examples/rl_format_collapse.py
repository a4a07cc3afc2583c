"""Format collapse during RL on a tiny LM, seen live by FormatProbe (Zhao et al. 2025, "Echo Chamber").

1. Pretrain a tiny byte-level GPT on single-digit sums answered in two formats, 70% ``"3+4 = 7"``
   and 30% ``"3+4 ans: 7"``, where the ``ans:`` answers are often wrong.
2. Fine-tune it with REINFORCE and group-normalised advantages (GRPO style) on a correctness reward
   (a LightningModule with manual optimization). A FormatProbe reads the rollouts the training
   step already produced (no extra compute) and flags the collapse; a second FormatProbe reads the
   exact format distribution on all 25 prompts from the probabilities of ``"="`` and ``"ans:"``.
3. Run again with a KL penalty toward the initial policy: the collapse comes later, or not at all.
4. A control run without reward: nothing collapses.

Usage::

    python examples/rl_format_collapse.py           # about a minute on 2 CPU cores
    python examples/rl_format_collapse.py --quick   # CI smoke test, a few seconds
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from probes.callbacks import FormatProbe
from probes.core.records import Record
from probes.demos import ByteTokenizer
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, pretrain_policy
from probes.formats.collapse import CollapseCriterion, FormatCollapseWarning


class PrintSink:
    """A minimal record sink: one line per ``every`` steps from the rollout and exact probes."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.latest: dict[str, Record] = {}

    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        pass

    def write(self, record: Record) -> None:
        # the exact reading of step t comes first (before update t+1), then the rollouts of step t
        self.latest[record.source] = record
        exact = self.latest.get("exact")
        if record.source != "rollouts" or record.step % self.every or exact is None or exact.step != record.step:
            return
        e, r = exact.tensors, record.tensors
        acc = r["accuracy"].tolist()
        print(
            f"  step {record.step:4d} | exact '=' {float(e['dist'][0]):.3f} 'ans:' {float(e['dist'][1]):.3f}"
            f" H {float(e['entropy_bits']):.3f} bits collapsed={bool(e['collapsed'])}"
            f" | rollouts '=' {float(r['dist'][0]):.2f} 'ans:' {float(r['dist'][1]):.2f}"
            f" acc '=' {acc[0]:.2f} 'ans:' {acc[1]:.2f} collapsed={bool(r['collapsed'])}",
            flush=True,
        )

    def flush(self) -> None:
        pass


def run(name: str, task: ArithmeticTask, *, steps: int, kl: float, reward: str, every: int, seed: int) -> dict:
    print(f"\n== {name}: reward={reward!r}, kl_coef={kl:g}, {steps} steps ==", flush=True)
    module = FormatRL(pretrain_policy(task, steps=300, seed=seed), task, reward=reward, kl_coef=kl, lr=5e-4, seed=seed)
    rollouts = FormatProbe(
        ARITHMETIC_FORMATS, mode="rollout", name="rollouts", collapse=CollapseCriterion(tau=0.95, patience=3)
    )
    exact = FormatProbe(
        ARITHMETIC_FORMATS,
        mode="scored",
        name="exact",
        prompts=task.prompts,
        tokenizer=ByteTokenizer(),
        model="model",
        collapse=CollapseCriterion(tau=0.95, patience=3),
    )
    sink = PrintSink(every)
    rollouts.subscribe(sink)
    exact.subscribe(sink)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rollouts, exact],
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always", FormatCollapseWarning)
        show = warnings.showwarning

        def show_collapse(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, FormatCollapseWarning):
                print(f"  ! {message}", flush=True)  # live, between the progress lines
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_collapse
        trainer.fit(module, module.prompts_loader(steps, 8, seed=seed))
    seconds = time.perf_counter() - start
    last = exact.history[-1].tensors
    acc = torch.stack([r.tensors["accuracy"] for r in rollouts.history[-10:]]).nanmean(dim=0).tolist()
    return {
        "run": name,
        "rollout_collapse_step": rollouts.collapse_state.first_step,
        "exact_collapse_step": exact.collapse_state.first_step,
        "exact_share_eq": float(last["dist"][0]) / max(1e-12, float(last["dist"][:2].sum())),
        "entropy_bits_first": float(exact.history[0].tensors["entropy_bits"]),
        "entropy_bits_last": float(last["entropy_bits"]),
        "accuracy_eq_last10": acc[0],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs for a CI smoke test")
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (default 150, quick 40)")
    parser.add_argument("--kl", type=float, default=3.0, help="KL coefficient of the second run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")  # a Lightning-internal deprecation notice
    steps = args.steps or (40 if args.quick else 150)
    every = 5 if args.quick else 10
    task = ArithmeticTask()
    results = [
        run("GRPO", task, steps=steps, kl=0.0, reward="correct", every=every, seed=args.seed),
        run("GRPO + KL", task, steps=steps, kl=args.kl, reward="correct", every=every, seed=args.seed),
        run("no reward", task, steps=steps, kl=0.0, reward="none", every=every, seed=args.seed),
    ]
    print("\nrun        | collapse step (rollouts, exact) | exact share '=' | H bits first -> last | acc '=' | s")
    for r in results:
        print(
            f"{r['run']:<10} | {r['rollout_collapse_step']:>14d}, {r['exact_collapse_step']:>5d}"
            f"           | {r['exact_share_eq']:15.3f} | {r['entropy_bits_first']:.3f} -> {r['entropy_bits_last']:.3f}"
            f"       | {r['accuracy_eq_last10']:7.2f} | {r['seconds']:.1f}"
        )
    print("(collapse step -1: no collapse; criterion: share of one format >= 0.95 for 3 consecutive records)")


if __name__ == "__main__":
    main()
