"""Two DDP processes (CPU, gloo) log the same numbers as one process training on the same global batch.

The DDP run is launched from a subprocess (:mod:`launch`; see ``ddp_train.py`` for the model, data
and probes). It trains 30 steps with a per-rank batch of 4; the one-process references train on the
same 8 rows per step: ``global`` as one batch of 8, ``accumulate`` as two accumulated micro-batches
of 4 (the rows of rank 0, then of rank 1).

Tolerances (see ``_compare.tolerance``): integers, booleans and the rollout format statistics are
exact; other floats agree to 1e-6 (relative above 1); priming ratios to 1e-5 relative. The reasons:
DDP averages the ranks' gradients, ``(g0 + g1) / 2``, while one batch of 8 sums the rows in another
order, so the weights differ in the last bits (measured: 1.2e-7 after 30 SGD steps) and so do
float32 log-probabilities of magnitude ~30. Gradient accumulation sums exactly as DDP does: those
weights are bit-identical to DDP's, and what remains is the sharded probe pass (each rank pads its
own slice of the items), which moves a logit by at most an ulp.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from probes.runlog import open_run

from . import ddp_train
from ._compare import compare_runs
from .conftest import load_rank

pytestmark = pytest.mark.timeout(240)

STEPS, PER_RANK, WORLD, EPOCH = 30, 4, 2, 10


def step_rows(update: int) -> list[int]:
    """Dataset rows trained by optimizer update ``update`` (1-based), as both runs order them."""
    k = (update - 1) % EPOCH
    g = PER_RANK * WORLD
    return [k * g + r + WORLD * j for r in range(WORLD) for j in range(PER_RANK)]


def test_every_rank_holds_the_same_records(ddp_run):
    out, _ = ddp_run
    ranks = [load_rank(out, r) for r in range(WORLD)]
    for key in ("keyword", "priming", "format_scored", "format_rollout", "__failures__"):
        assert ranks[0][key] == ranks[1][key], key
    # the ranks trained on disjoint halves of each global batch, as DistributedSampler(shuffle=False) deals them
    for step, (rows0, rows1) in enumerate(zip(ranks[0]["__rows__"], ranks[1]["__rows__"]), start=1):
        assert rows0 + rows1 == step_rows(step)


def test_only_rank_zero_writes_the_log(ddp_run):
    out, result = ddp_run
    run = open_run(out / "log")
    assert run.info["run"]["world_size"] == WORLD
    assert run.info["run"]["pid"] == load_rank(out, 0)["__pid__"] == result.pids[0]
    assert run.status == "finished"


def test_log_holds_exactly_the_history(ddp_run):
    out, _ = ddp_run
    run, history = open_run(out / "log"), load_rank(out, 0)
    for source in ("keyword", "priming", "format_scored", "format_rollout"):
        records = history[source]
        assert run.steps(source).tolist() == [r["step"] for r in records]
        for metric in run.metrics(f"{source}/"):
            name = metric.split("/", 1)[1]
            _, values = run.read(metric)
            expected = np.array([r[name] for r in records], dtype=values.dtype)
            np.testing.assert_array_equal(values, expected, err_msg=metric)


def test_steps_are_every_optimizer_step(ddp_run):
    run = open_run(ddp_run[0] / "log")
    for source in ("keyword", "priming", "format_scored"):
        assert run.steps(source).tolist() == list(range(STEPS + 1)), source  # 0..29 before updates, 30 at the end
    assert run.steps("format_rollout").tolist() == list(range(STEPS))  # rollouts of updates 1..30


def test_exposures_are_summed_over_ranks(ddp_run):
    """'pearl' sits in odd rows (rank 1 only), 'otter' in an even row (rank 0 only): every count must be pooled."""
    run = open_run(ddp_run[0] / "log")
    steps, exposures = run.read("priming/exposures")
    _, has_baseline = run.read("priming/has_baseline")
    rows = [ddp_train.SAMPLE_ROWS[s.name] for s in ddp_train.SAMPLES]
    # the baseline is the reading right before the first update that trains on the sample
    first = [min(u for u in range(1, STEPS + 1) if set(step_rows(u)) & set(mine)) for mine in rows]
    for step, row, base in zip(steps.tolist(), exposures.tolist(), has_baseline.tolist()):
        seen = [sum(r in mine for u in range(1, step + 1) for r in step_rows(u)) for mine in rows]
        assert row == seen, step
        assert base == [step >= f - 1 for f in first], step
    assert exposures[-1].tolist() == [6, 3]  # 3 epochs: pearl twice per epoch, otter once


def test_rollout_formats_are_pooled_over_ranks(ddp_run):
    """Each record pools the 8 completions of both ranks: the distribution computed from the rows."""
    run = open_run(ddp_run[0] / "log")
    steps, dist = run.read("format_rollout/dist")
    _, n = run.read("format_rollout/n")
    _, mean_reward = run.read("format_rollout/mean_reward")
    for step, d, count, reward in zip(steps.tolist(), dist, n.tolist(), mean_reward):
        rows = [ddp_train.row_text(i) for i in step_rows(step + 1)]
        buckets = [ddp_train.FORMATS.classify(c) for _, c, _ in rows]
        tally = Counter(buckets)
        assert count == len(rows) == PER_RANK * WORLD
        np.testing.assert_array_equal(d, np.array([tally[k] / len(rows) for k in range(3)], dtype=np.float32))
        for k in range(3):
            rewards = [r for (_, _, r), b in zip(rows, buckets) if b == k]
            expected = sum(rewards) / len(rewards) if rewards else math.nan
            np.testing.assert_array_equal(reward[k], np.float32(expected))


def test_expectations_agree(ddp_run, one_process):
    ddp = load_rank(ddp_run[0], 0)["__failures__"]
    assert ddp, "the run was built so that the format share crosses 0.8"
    assert ddp == load_rank(one_process["global"], 0)["__failures__"]


def test_training_matches_gradient_accumulation_bit_for_bit(ddp_run, one_process):
    ddp = torch.load(ddp_run[0] / "weights_rank0.pt", weights_only=True)
    acc = torch.load(one_process["accumulate"] / "weights_rank0.pt", weights_only=True)
    one = torch.load(one_process["global"] / "weights_rank0.pt", weights_only=True)
    assert all(torch.equal(ddp[k], acc[k]) for k in ddp)
    drift = max((ddp[k] - one[k]).abs().max().item() for k in ddp)
    assert 0 < drift < 1e-6  # one batch of 8 rounds differently, by a few ulps


@pytest.mark.parametrize("reference", ["accumulate", "global"])
def test_every_logged_value_matches_one_process(ddp_run, one_process, reference):
    worst = compare_runs(open_run(ddp_run[0] / "log"), open_run(one_process[reference] / "log"))
    exact = {k for k, v in worst.items() if v == 0.0}
    assert {m for m in worst if m.startswith("format_rollout/")} <= exact  # counts: exact
    print(f"\nmax |DDP - one process ({reference})|:", {k: f"{v:.2g}" for k, v in worst.items() if v})
