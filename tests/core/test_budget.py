"""The token budget of a scoring micro-batch: ``"auto"`` resolves per device and per head mode, by
the rule in :mod:`probes.core.budget` (recomputed here by hand), and scores stay exact."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from probes import KeywordProbe, ScoringOptions
from probes.core import budget as B
from probes.core.context import TrainingContext
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from tests.reference import brute_force_pair

CPU = torch.device("cpu")
PAIRS = [(f"p{i}", f"item {i} has the colour", kw) for i, kw in enumerate(["red", "deep blue", "grey"] * 10)]


def test_an_int_is_used_as_given() -> None:
    assert B.resolve_token_budget(300, device=CPU, vocab_size=10**6, full_logits=True) == 300


def test_cpu_rule_by_hand() -> None:
    auto = {"device": CPU, "full_logits": False}
    assert B.resolve_token_budget("auto", vocab_size=5000, **auto) == 8192
    # full logits: 128 MiB / (V * 4 bytes * 2), rounded down to a power of two, at least 256
    full = {"device": CPU, "full_logits": True}
    assert B.resolve_token_budget("auto", vocab_size=5000, **full) == 2048  # 3355.4 -> 2048
    assert B.resolve_token_budget("auto", vocab_size=256, **full) == 8192  # 65536, capped at the CPU budget
    assert B.resolve_token_budget("auto", vocab_size=50257, **full) == 256  # 333.8 -> 256
    assert B.resolve_token_budget("auto", vocab_size=200_000, **full) == 256  # 83.9 -> floor


def test_cuda_rule_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    for free, restricted, full_v50k in ((80 * 2**30, 32768, 8192), (2**30, 16384, 256)):
        monkeypatch.setattr(B, "_free_cuda_bytes", lambda device, free=free: free)
        # restricted: min(32768, 2^floor(log2(free / 10 / 4096))); 1 GiB: 26214.4 -> 16384
        assert B.resolve_token_budget("auto", device=cuda, vocab_size=50257, full_logits=False) == restricted
        # full logits: also <= free / 20 / (V * 8); 80 GiB: 10682.6 -> 8192; 1 GiB: 133.5 -> 256 (floor)
        assert B.resolve_token_budget("auto", device=cuda, vocab_size=50257, full_logits=True) == full_v50k


def test_options_take_auto_and_refuse_other_strings() -> None:
    assert ScoringOptions().token_budget == "auto"
    with pytest.raises(ValueError, match="positive int or 'auto', got 'big'"):
        ScoringOptions(token_budget="big")  # type: ignore[arg-type]


class _ReshapingBigVocab(nn.Module):
    """A vocabulary of 70,000 and a forward that reshapes the head's output to [batch, length, V]:
    the restricted head fails its check, so the reader must fall back to full logits and a smaller
    budget."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gpt = TinyGPT(GPTConfig(vocab_size=70_000, n_layer=1, n_embd=16, n_head=2, block_size=48))
        self.lm_head = self.gpt.head

    def forward(self, ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        return self.gpt(ids, attention_mask).reshape(ids.shape[0], ids.shape[1], -1)


def test_the_reader_packs_with_the_budget_of_its_head_mode() -> None:
    torch.manual_seed(0)
    plain = TinyGPT(GPTConfig(vocab_size=70_000, n_layer=1, n_embd=16, n_head=2, block_size=48))
    reshaping = _ReshapingBigVocab()
    for model, full_logits in ((plain, False), (reshaping, True)):
        probe = KeywordProbe(PAIRS, ByteTokenizer())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.check(TrainingContext(model, step=0))
        reader = probe.reader
        want = 256 if full_logits else 8192  # 128 MiB / (70,000 * 8) = 239.7 -> 128 -> floor 256
        assert reader.budget == want and reader.plan is not None and reader.plan.token_budget == want
        widths = [len(b.rows) * len(b.rows[0]) for b in reader.plan._batches]
        assert max(widths) <= want and (len(widths) > 1) == full_logits  # 30 rows of ~26 tokens: 780 tokens
        got = probe.read(model)
        for i, item in enumerate(probe.items):  # exact either way
            ref = brute_force_pair(lambda ids, m=model: m(ids), item.context, item.target)
            assert abs(float(got.logp_seq[i]) - ref["logp_seq"]) < 1e-4 and int(got.rank[i]) == ref["rank"]
