"""A toy RL task where format collapse happens in seconds on a CPU.

Problems are single-digit sums written as a prompt ``"3+4 "``. Pretraining text answers them in
two formats, ``"= 7"`` and ``"ans: 7"``, in a chosen mix (70/30 by default), and the answers in the
second format are wrong a chosen fraction of the time: the pretrained model answers in both
formats, and one of them earns more reward.

:class:`FormatRL` then runs REINFORCE with group-normalised advantages (GRPO style, no clipping,
one update per batch) and a correctness reward, with manual optimization, optionally with a KL
penalty toward the initial policy. Its ``training_step`` returns the rollouts under
``"completions"`` / ``"rewards"`` / ``"correct"``, which is what
:class:`~probes.formats.probe.FormatProbe` in rollout mode reads.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.formats.sampling import SamplerConfig, sample_ids
from probes.formats.spec import Format, FormatSpec

__all__ = [
    "ARITHMETIC_FORMATS",
    "POLICY_SIZES",
    "ArithmeticTask",
    "FormatRL",
    "PromptDataset",
    "group_advantages",
    "policy_config",
    "pretrain_policy",
]

NEWLINE = 10  # the byte that ends an answer

#: The two answer formats of the toy task; scored mode reads the prefixes ``"="`` and ``"ans:"``.
ARITHMETIC_FORMATS = FormatSpec(
    [
        Format("equals", regex=r"\A=", prefixes=("=",), description="'= 7'"),
        Format("ans", regex=r"\Aans:", prefixes=("ans:",), description="'ans: 7'"),
    ]
)

_ANSWER = re.compile(r"\A(?:=|ans:)\s*(-?\d+)\s*\Z")


@dataclass(frozen=True)
class ArithmeticTask:
    """Single-digit sums ``a+b`` with ``0 <= a, b < max_operand``.

    Args:
        max_operand: operands range over ``0 .. max_operand - 1``.
        mix: share of pretraining answers in the ``"= 7"`` format (the rest use ``"ans: 7"``).
        ans_noise: probability that a pretraining answer in the ``"ans:"`` format is wrong.
        eq_noise: probability that a pretraining answer in the ``"="`` format is wrong.
    """

    max_operand: int = 5
    mix: float = 0.7
    ans_noise: float = 0.6
    eq_noise: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_operand, int) or not 2 <= self.max_operand <= 10:
            raise ValueError(f"Expected `max_operand` in [2, 10], got {self.max_operand!r}.")
        for name in ("mix", "ans_noise", "eq_noise"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Expected `{name}` in [0, 1], got {value!r}.")

    @property
    def problems(self) -> list[tuple[int, int]]:
        return [(a, b) for a in range(self.max_operand) for b in range(self.max_operand)]

    def prompt(self, index: int) -> str:
        a, b = self.problems[index]
        return f"{a}+{b} "

    def answer(self, index: int) -> int:
        a, b = self.problems[index]
        return a + b

    @property
    def prompts(self) -> list[str]:
        return [self.prompt(i) for i in range(len(self.problems))]

    def is_correct(self, index: int, completion: str) -> bool:
        """Whether ``completion`` (after the prompt, newline stripped) states the right sum."""
        m = _ANSWER.match(completion.strip())
        return m is not None and int(m.group(1)) == self.answer(index)

    def pretraining_lines(self, n: int, *, seed: int = 0) -> list[str]:
        """``n`` solved problems in the chosen format mix, with the chosen answer noise."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, len(self.problems), (n,), generator=g).tolist()
        u = torch.rand(n, 2, generator=g).tolist()
        wrong = torch.randint(1, 2 * self.max_operand - 1, (n,), generator=g).tolist()
        lines = []
        for i, (uf, un), w in zip(idx, u, wrong):
            eq = uf < self.mix
            c = self.answer(i)
            if un < (self.eq_noise if eq else self.ans_noise):
                c = (c + w) % (2 * self.max_operand - 1)  # a different sum in range
            lines.append(f"{self.prompt(i)}{'= ' if eq else 'ans: '}{c}\n")
        return lines


#: Policy shapes for the scale comparison of the RL study (``policy_config(size)``).
POLICY_SIZES = {
    "small": dict(n_layer=2, n_head=2, n_embd=48),  # about 60k parameters
    "large": dict(n_layer=4, n_head=4, n_embd=96),  # about 460k parameters
}


def policy_config(size: str = "small") -> GPTConfig:
    """The model shape used by the toy task: ``"small"`` (the default, about 60k parameters) or
    ``"large"`` (about 460k)."""
    if size not in POLICY_SIZES:
        raise ValueError(f"Expected `size` in {sorted(POLICY_SIZES)}, got {size!r}.")
    return GPTConfig(vocab_size=256, block_size=24, **POLICY_SIZES[size])


def _line_batch(lines: Sequence[str], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(lines), width), NEWLINE, dtype=torch.long)
    labels = torch.full((len(lines), width), -100, dtype=torch.long)
    for r, line in enumerate(lines):
        b = torch.tensor(list(line.encode()), dtype=torch.long)
        ids[r, : len(b)] = b
        labels[r, : len(b) - 1] = b[1:]
    return ids, labels


def _pretrain_state(
    task: ArithmeticTask, steps: int, batch_size: int, lr: float, seed: int, size: str = "small"
) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyGPT(policy_config(size))
    lines = task.pretraining_lines(steps * batch_size, seed=seed + 1)
    width = max(len(x) for x in lines)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for s in range(steps):
        ids, labels = _line_batch(lines[s * batch_size : (s + 1) * batch_size], width)
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=32)
def _cached_pretrain(
    task: ArithmeticTask, steps: int, batch_size: int, lr: float, seed: int, size: str = "small"
) -> dict[str, torch.Tensor]:
    return _pretrain_state(task, steps, batch_size, lr, seed, size)


def pretrain_policy(
    task: Optional[ArithmeticTask] = None,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    size: str = "small",
) -> TinyGPT:
    """A :class:`TinyGPT` pretrained on the task's two-format text (seconds on a CPU).

    Deterministic for a seed; leaves the global RNG untouched. Results are cached per arguments,
    and every call returns a fresh model loaded from the cached weights.

    Args:
        task: the arithmetic task (format mix and answer noise); defaults to :class:`ArithmeticTask`.
        steps: optimizer steps.
        batch_size: problems per step.
        lr: AdamW learning rate.
        seed: seeds model initialisation and data.
        size: ``"small"`` or ``"large"`` (:data:`POLICY_SIZES`).
    """
    task = task or ArithmeticTask()
    state = _cached_pretrain(task, steps, batch_size, lr, seed, size)
    model = TinyGPT(policy_config(size))
    model.load_state_dict(state)
    return model


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GRPO-style advantages: each reward minus its group's mean, over the group's standard deviation.

    ``rewards`` holds consecutive groups of ``group_size`` completions of the same prompt. A group
    whose rewards are all equal (standard deviation 0) gets zero advantages: it carries no signal.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"Expected a 1-D reward tensor whose length is a multiple of group_size={group_size},"
            f" got shape {list(rewards.shape)}."
        )
    grouped = rewards.view(-1, group_size)
    std = grouped.std(dim=1, unbiased=False, keepdim=True)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return torch.where(std > 0, centred / std.clamp_min(1e-12), torch.zeros_like(centred)).reshape(-1)


class PromptDataset(Dataset):
    """``length`` problem indices drawn once from a seeded generator (batched into prompt groups)."""

    def __init__(self, task: ArithmeticTask, length: int, *, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.indices = torch.randint(0, len(task.problems), (length,), generator=g)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.indices[i]


class FormatRL(pl.LightningModule):
    """REINFORCE with group-normalised advantages on :class:`ArithmeticTask` (manual optimization).

    Each batch is a tensor of problem indices. For every prompt the policy samples ``group_size``
    completions; the reward is 1 for a correct sum and 0 otherwise; the advantage of a completion
    is its reward minus its group's mean, divided by the group's standard deviation (0 when all
    rewards in the group are equal). The loss is ``-mean(advantage * log p(completion))`` plus
    ``kl_coef`` times the exact per-token KL divergence from the initial policy.

    Args:
        policy: the (pretrained) :class:`TinyGPT`; stored as ``self.model``.
        task: the arithmetic task.
        group_size: completions per prompt.
        lr: Adam learning rate.
        kl_coef: weight of the KL penalty toward the initial policy (0 disables it).
        reward: ``"correct"`` (the task reward), ``"none"`` (always 0: no learning signal) or
            ``"shuffled"`` (the correctness rewards permuted within each group: the same reward
            statistics, no information about which completion earned them).
        max_new_tokens: tokens per completion.
        temperature: sampling temperature of the rollouts.
        seed: rollouts of step ``t`` use seed ``seed * 1_000_003 + t``.
    """

    def __init__(
        self,
        policy: TinyGPT,
        task: Optional[ArithmeticTask] = None,
        *,
        group_size: int = 8,
        lr: float = 2e-3,
        kl_coef: float = 0.0,
        reward: Literal["correct", "none", "shuffled"] = "correct",
        max_new_tokens: int = 7,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if reward not in ("correct", "none", "shuffled"):
            raise ValueError(f"Expected `reward` to be 'correct', 'none' or 'shuffled', got {reward!r}.")
        if not isinstance(group_size, int) or group_size < 2:
            raise ValueError(
                f"Expected `group_size` to be an int >= 2 (advantages are group-relative), got {group_size!r}."
            )
        if kl_coef < 0:
            raise ValueError(f"Expected `kl_coef` >= 0, got {kl_coef!r}.")
        self.automatic_optimization = False
        self.model = policy
        self.task = task or ArithmeticTask()
        self.tokenizer = ByteTokenizer()
        self.group_size = group_size
        self.lr = lr
        self.kl_coef = kl_coef
        self.reward_mode = reward
        self.sampler = SamplerConfig(temperature=temperature, max_new_tokens=max_new_tokens, eos_id=NEWLINE)
        self.seed = seed
        # the frozen initial policy; a plain attribute, so it is neither optimised nor checkpointed
        self._ref: Optional[TinyGPT] = copy.deepcopy(policy).requires_grad_(False) if kl_coef > 0 else None

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def rewards_for(self, indices: Sequence[int], texts: Sequence[str], generator: torch.Generator) -> torch.Tensor:
        """Rewards ``[len(texts)]`` (float) for completions grouped by prompt, per ``reward`` mode."""
        g = self.group_size
        correct = torch.tensor(
            [float(self.task.is_correct(int(indices[k // g]), t)) for k, t in enumerate(texts)], dtype=torch.float32
        )
        if self.reward_mode == "none":
            return torch.zeros_like(correct)
        if self.reward_mode == "shuffled":
            perm = torch.stack([torch.randperm(g, generator=generator) for _ in range(len(indices))])
            perm = perm + torch.arange(len(indices))[:, None] * g
            return correct[perm.reshape(-1)]
        return correct

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, Any]:
        indices = [int(i) for i in batch.tolist()]
        g = self.group_size
        step = self.global_step
        seed = self.seed * 1_000_003 + step
        prompts = [self.tokenizer.encode(self.task.prompt(i)) for i in indices]
        cfg = SamplerConfig(**{**self.sampler.__dict__, "seed": seed})
        samples = sample_ids(self.model, prompts, g, cfg)
        flat = [c for per_prompt in samples for c in per_prompt]
        texts = [self.tokenizer.decode(c) for c in flat]
        rewards = self.rewards_for(indices, texts, torch.Generator().manual_seed(seed))
        correct = torch.tensor(
            [self.task.is_correct(indices[k // g], t) for k, t in enumerate(texts)], dtype=torch.bool
        )
        adv = group_advantages(rewards, g).to(self.device)

        # one padded forward over prompt + completion (+ the newline when the policy stopped)
        seqs, starts = [], []
        for k, c in enumerate(flat):
            p = prompts[k // g]
            full = p + c + ([NEWLINE] if len(c) < self.sampler.max_new_tokens else [])
            seqs.append(full)
            starts.append(len(p))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), NEWLINE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
        for r, (s, st) in enumerate(zip(seqs, starts)):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, st - 1 : len(s) - 1] = True  # logits at t predict token t+1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logp_all = torch.log_softmax(self.model(ids)[:, :-1].float(), dim=-1)  # [B, T-1, V]; right pads are causal-safe
        token_logp = logp_all.gather(-1, ids[:, 1:, None]).squeeze(-1)
        seq_logp = (token_logp * mask).sum(dim=1)
        pg_loss = -(adv * seq_logp).mean()
        kl = torch.zeros((), device=self.device)
        if self._ref is not None:
            self._ref.to(self.device)
            with torch.no_grad():
                ref_logp = torch.log_softmax(self._ref(ids)[:, :-1].float(), dim=-1)
            per_pos = (logp_all.exp() * (logp_all - ref_logp)).sum(-1)  # exact KL(pi || ref) per position
            kl = (per_pos * mask).sum() / mask.sum().clamp_min(1)
        loss = pg_loss + self.kl_coef * kl

        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.log("reward", rewards.mean(), on_step=True, prog_bar=True, batch_size=len(texts))
        return {
            "loss": loss.detach(),
            "completions": texts,
            "rewards": rewards,
            "correct": correct,
            "kl": kl.detach(),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def prompts_loader(self, steps: int, prompts_per_step: int = 8, *, seed: int = 0) -> DataLoader:
        """A loader of ``steps`` batches of ``prompts_per_step`` problem indices."""
        ds = PromptDataset(self.task, steps * prompts_per_step, seed=seed)
        return DataLoader(ds, batch_size=prompts_per_step, shuffle=False)
