"""The toy RL task: the format entropy falls with the reward and not without it; the detector tells."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from probes.callbacks import FormatProbe
from probes.demos import ByteTokenizer
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, group_advantages, pretrain_policy
from probes.formats.collapse import CollapseCriterion, FormatCollapseWarning

from ._util import trainer

STEPS = 30


def test_group_advantages_against_a_loop():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.4, 0.9, 0.0])
    got = group_advantages(rewards, 4).tolist()
    want = []
    for g in range(3):
        group = rewards[4 * g : 4 * g + 4].tolist()
        mu, sd = statistics.fmean(group), statistics.pstdev(group)
        want += [(r - mu) / sd if sd > 0 else 0.0 for r in group]
    assert got == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="multiple of group_size=5"):
        group_advantages(rewards, 5)


def test_task_correctness_and_pretraining_mix():
    task = ArithmeticTask()
    assert task.prompt(7) == "1+2 " and task.answer(7) == 3
    assert task.is_correct(7, "= 3") and task.is_correct(7, "ans: 3\n") and not task.is_correct(7, "= 4")
    assert not task.is_correct(7, "3")
    lines = task.pretraining_lines(4000, seed=3)
    eq = [x for x in lines if " = " in x]
    assert abs(len(eq) / len(lines) - 0.7) < 0.03  # the requested 70/30 mix
    ans_wrong = [x for x in lines if "ans:" in x and not task.is_correct(task.prompts.index(x[:4]), x[4:])]
    assert abs(len(ans_wrong) / (len(lines) - len(eq)) - 0.6) < 0.05
    with pytest.raises(ValueError, match="mix"):
        ArithmeticTask(mix=1.5)


def _run(reward: str) -> tuple[FormatProbe, FormatProbe]:
    task = ArithmeticTask()
    module = FormatRL(pretrain_policy(task, steps=300), task, reward=reward, lr=5e-4)
    rollouts = FormatProbe(ARITHMETIC_FORMATS, mode="rollout", collapse=CollapseCriterion(tau=0.9, patience=3))
    exact = FormatProbe(
        ARITHMETIC_FORMATS,
        mode="scored",
        name="scored",
        prompts=task.prompts,
        tokenizer=ByteTokenizer(),
        model="model",
        collapse=CollapseCriterion(tau=0.95, patience=3),
    )
    trainer([rollouts, exact], max_steps=STEPS).fit(module, module.prompts_loader(STEPS, 8))
    return rollouts, exact


def test_entropy_falls_with_the_reward_and_the_detector_fires():
    with pytest.warns(FormatCollapseWarning, match="'equals'"):
        rollouts, exact = _run("correct")
    h = exact.series("norm_entropy")[1]
    assert len(h) == STEPS + 1  # before every update, plus the final reading
    assert float(h[0]) > 0.75 and float(h[-1]) < float(h[0]) - 0.4  # 70/30 mix -> mostly '= 7'
    assert rollouts.collapse_state.first_format == 0 and 0 < rollouts.collapse_state.first_step < STEPS
    assert exact.collapse_state.collapsed and exact.collapse_state.first_format == 0
    # the rollout probe read what training produced: 8 prompts x 8 completions per step
    assert all(int(r.tensors["n"]) == 64 for r in rollouts.history)
    acc = rollouts.series("accuracy")[1]
    assert float(acc[0, 0]) > float(acc[0, 1])  # the '=' answers were the more accurate ones


def test_without_a_reward_the_policy_does_not_move_and_no_collapse():
    rollouts, exact = _run("none")
    h = exact.series("norm_entropy")[1]
    assert torch.equal(h, h[:1].expand_as(h))  # zero advantages: the policy does not move at all
    assert not rollouts.collapse_state.collapsed and rollouts.collapse_state.first_step == -1
    assert not exact.collapse_state.collapsed and exact.collapse_state.first_step == -1
    assert not any(bool(r.tensors["collapsed"]) for r in rollouts.history)
    assert math.isfinite(float(rollouts.series("norm_entropy")[1].mean()))


def test_a_shuffled_reward_is_the_correct_reward_permuted_within_each_group():
    # The entropy under the shuffled control is not asserted: it is a random walk that may fall
    # (docs/science.md: the shuffled control collapsed onto '=' in 4 of 6 study runs; one seed of it
    # fell by 0.07 on one machine and 0.43 with two threads on the same machine).
    task = ArithmeticTask()
    policy = pretrain_policy(task, steps=300)
    correct = FormatRL(policy, task, reward="correct")
    shuffled = FormatRL(policy, task, reward="shuffled")
    g = correct.group_size
    indices = [7, 3, 11]
    texts = ["= 3", "= 4", "ans: 3\n", "3"] * (len(indices) * g // 4) + ["= 3"] * (len(indices) * g % 4)
    want = correct.rewards_for(indices, texts, torch.Generator().manual_seed(0))
    got = shuffled.rewards_for(indices, texts, torch.Generator().manual_seed(0))
    assert not torch.equal(got, want)  # the order changed ...
    for k in range(len(indices)):  # ... within each prompt's group, and nothing else
        assert sorted(got[k * g : (k + 1) * g].tolist()) == sorted(want[k * g : (k + 1) * g].tolist())
