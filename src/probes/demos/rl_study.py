"""The RL format study: does RL amplify the pretraining-dominant format, or just the accurate one?

Zhao et al. 2025 ("Echo Chamber", arXiv 2504.07912) find that RL post-training collapses the
output onto one format the model learned in pretraining, and that which format wins depends on
the model's scale. In the toy arithmetic task of :mod:`probes.demos.rl` a policy is pretrained on
sums answered as ``"3+4 = 7"`` (the majority, 70%) or ``"3+4 ans: 7"`` (30%). Whether a collapse
onto ``"="`` shows *amplification of the dominant format* or merely *a reward choosing the more
accurate format* depends on how accurate each format is, so the study crosses:

========================  ==============================================  ======================
condition                 pretraining answers                             reward
========================  ==============================================  ======================
``majority_accurate``     60% of ``ans:`` answers wrong (the old demo)     correctness
``equal_accuracy``        both formats always right                        correctness (blind to
                                                                           format)
``minority_accurate``     60% of ``=`` answers wrong                       correctness
``shuffled``              both formats always right                        correctness permuted
                                                                           within each group
``equal_accuracy_kl``     both formats always right                        correctness + KL to the
                                                                           initial policy
========================  ==============================================  ======================

over seeds and two policy sizes (:data:`probes.demos.rl.POLICY_SIZES`). Each run records, from a
scored :class:`~probes.callbacks.FormatProbe` on all prompts (exact probabilities of ``"="`` and
``"ans:"``), the share of ``"="`` among the two formats before and after RL and the step where a
rollout FormatProbe flags a collapse (share >= 0.95 for 3 consecutive records).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from scipy import stats

from probes.callbacks import FormatProbe
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, pretrain_policy
from probes.demos.tokenizer import ByteTokenizer
from probes.formats.collapse import CollapseCriterion, FormatCollapseWarning

__all__ = ["CONDITIONS", "Condition", "RLRun", "format_rl_table", "run_condition", "run_rl_study", "summarize_rl"]


@dataclass(frozen=True)
class Condition:
    """One arm of the study: the pretraining data's answer noise, the reward, the KL weight."""

    name: str
    task: ArithmeticTask
    reward: str = "correct"
    kl_coef: float = 0.0
    description: str = ""


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("majority_accurate", ArithmeticTask(ans_noise=0.6), description="'=' more accurate (confounded)"),
        Condition("equal_accuracy", ArithmeticTask(ans_noise=0.0), description="reward blind to format"),
        Condition("minority_accurate", ArithmeticTask(ans_noise=0.0, eq_noise=0.6), description="'ans:' more accurate"),
        Condition("shuffled", ArithmeticTask(ans_noise=0.0), reward="shuffled", description="control: no information"),
        Condition("equal_accuracy_kl", ArithmeticTask(ans_noise=0.0), kl_coef=3.0, description="equal accuracy + KL"),
    )
}


@dataclass(frozen=True)
class RLRun:
    """One RL run's figures (the exact share is of ``"="`` among the two formats, scored mode)."""

    condition: str
    size: str
    seed: int
    steps: int
    share_eq_before: float
    share_eq_after: float
    entropy_bits_before: float
    entropy_bits_after: float
    collapse_step: int  # rollout probe; -1: no collapse
    collapsed_onto: str  # "=", "ans:" or ""
    accuracy_after: float  # rollouts of the last 10 steps
    seconds: float


def run_condition(
    condition: Condition, *, seed: int, size: str = "small", steps: int = 150, pretrain_steps: int = 300
) -> RLRun:
    """Pretrain a policy for ``condition`` and tune it with RL; return its figures."""
    pl.seed_everything(seed, verbose=False)
    task = condition.task
    policy = pretrain_policy(task, steps=pretrain_steps, seed=seed, size=size)
    module = FormatRL(policy, task, reward=condition.reward, kl_coef=condition.kl_coef, lr=5e-4, seed=seed)  # type: ignore[arg-type]
    rollouts = FormatProbe(
        ARITHMETIC_FORMATS, mode="rollout", name="rollouts", collapse=CollapseCriterion(tau=0.95, patience=3)
    )
    exact = FormatProbe(
        ARITHMETIC_FORMATS, mode="scored", name="exact", prompts=task.prompts, tokenizer=ByteTokenizer(),
        model="model", collapse=None, every_n_steps=max(1, steps // 10),
    )
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[rollouts, exact], accelerator="cpu",
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatCollapseWarning)
        trainer.fit(module, module.prompts_loader(steps, 8, seed=seed))
    first, last = exact.history[0].tensors, exact.history[-1].tensors

    def share(t: dict[str, torch.Tensor]) -> float:
        d = t["dist"].double()
        return float(d[0] / d[:2].sum())

    state = rollouts.collapse_state
    step = -1 if state.first_step is None else int(state.first_step)
    onto = ""
    if step >= 0:
        collapsed = [r for r in rollouts.history if r.step >= step]
        onto = ARITHMETIC_FORMATS.formats[int(collapsed[0].tensors["dominant"])].name
        onto = {"equals": "=", "ans": "ans:"}.get(onto, onto)
    # overall rollout accuracy of a record: per-format accuracy weighted by the formats' shares
    overall = [float((r.tensors["accuracy"].double().nan_to_num(0) * r.tensors["dist"].double()).sum())
               for r in rollouts.history[-10:]]
    return RLRun(
        condition=condition.name, size=size, seed=seed, steps=steps,
        share_eq_before=share(first), share_eq_after=share(last),
        entropy_bits_before=float(first["entropy_bits"]), entropy_bits_after=float(last["entropy_bits"]),
        collapse_step=step, collapsed_onto=onto,
        accuracy_after=float(np.mean(overall)) if overall else math.nan,
        seconds=time.perf_counter() - start,
    )


def run_rl_study(
    conditions: Iterable[str], seeds: Sequence[int], sizes: Sequence[str], *, steps: int = 150,
    pretrain_steps: int = 300, log: Any = print,
) -> list[RLRun]:
    """Every condition x size x seed, in that order; ``log`` gets one line per run."""
    runs = []
    for name in conditions:
        for size in sizes:
            for seed in seeds:
                cond = CONDITIONS[name]
                r = run_condition(cond, seed=seed, size=size, steps=steps, pretrain_steps=pretrain_steps)
                runs.append(r)
                if log is not None:
                    log(
                        f"  {name:18s} {size:5s} seed {seed}: share '=' {r.share_eq_before:.3f} ->"
                        f" {r.share_eq_after:.3f}, collapse step {r.collapse_step} {r.collapsed_onto!r},"
                        f" {r.seconds:.0f} s"
                    )
    return runs


def _mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a Student-t interval (NaN half-width with one value)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - h, m + h


def summarize_rl(runs: Sequence[RLRun]) -> list[dict[str, Any]]:
    """One row per (condition, size): mean share of ``"="`` before and after with 95% t-intervals
    over seeds, how many runs collapsed and onto which format, and the collapse steps."""
    rows = []
    keys = list(dict.fromkeys((r.condition, r.size) for r in runs))
    for cond, size in keys:
        group = [r for r in runs if (r.condition, r.size) == (cond, size)]
        before = _mean_ci([r.share_eq_before for r in group])
        after = _mean_ci([r.share_eq_after for r in group])
        change = _mean_ci([r.share_eq_after - r.share_eq_before for r in group])
        rows.append({
            "condition": cond, "size": size, "n_seeds": len(group),
            "share_eq_before": before, "share_eq_after": after, "change": change,
            "n_collapsed": sum(r.collapse_step >= 0 for r in group),
            "onto": "/".join(sorted({r.collapsed_onto for r in group if r.collapsed_onto})) or "-",
            "collapse_steps": [r.collapse_step for r in group],
            "accuracy_after": float(np.mean([r.accuracy_after for r in group])),
            "runs": [asdict(r) for r in group],
        })
    return rows


def format_rl_table(rows: Sequence[dict[str, Any]]) -> str:
    """The study's table as fixed-width text."""

    def ci(v: tuple[float, float, float]) -> str:
        m, lo, hi = v
        return f"{m:.3f}" if math.isnan(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"

    head = (
        f"{'condition':18s} {'size':5s} {'seeds':>5s} | {'share = before':>22s} | {'share = after (95% CI)':>22s}"
        f" | {'change':>23s} | collapsed (onto) | steps"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        collapsed = f"{r['n_collapsed']}/{r['n_seeds']} ({r['onto']})"
        lines.append(
            f"{r['condition']:18s} {r['size']:5s} {r['n_seeds']:5d} | {ci(r['share_eq_before']):>22s} |"
            f" {ci(r['share_eq_after']):>22s} | {ci(r['change']):>23s} |"
            f" {collapsed:16s} | {r['collapse_steps']}"
        )
    return "\n".join(lines)
