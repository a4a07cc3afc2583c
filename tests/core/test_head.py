"""The LM head only at read positions: the same scores as full logits, a head output of the read
positions only, and a fallback (with a warning) for models whose forward changes after the head."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from probes import KeywordProbe
from probes.core.context import TrainingContext
from probes.core.head import find_head
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from tests.reference import brute_force_pair

PAIRS = [(f"p{i}", c, kw) for i, (c, kw) in enumerate(
    [("the colour of the sky is", "blue"), ("the colour of sand is", "yellow"), ("snow is", "white and cold")]
)]


def _gpt() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48))


class _Mixing(nn.Module):
    """Mixes positions after the head: restricting the head changes its output, so the probe must
    fall back to full logits."""

    def __init__(self) -> None:
        super().__init__()
        self.gpt = _gpt()
        self.lm_head = self.gpt.head

    def forward(self, ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        logits = self.gpt(ids, attention_mask)
        return logits + logits.mean(dim=1, keepdim=True)


def _checked(probe: KeywordProbe, model: nn.Module) -> KeywordProbe:
    """The dry check a training loop runs before the first step (it verifies the restricted head)."""
    probe.check(TrainingContext(model, step=0))
    return probe


def _head_rows(model: nn.Module, head: nn.Module, probe: KeywordProbe) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    handle = head.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    try:
        probe.read(model)
    finally:
        handle.remove()
    return shapes


def test_an_unchecked_reader_scores_with_full_logits() -> None:
    model = _gpt()
    probe = KeywordProbe(PAIRS, ByteTokenizer())
    assert _head_rows(model, model.head, probe)[-1][0] > 1  # [batch, length, vocab]: not restricted yet
    assert _head_rows(model, model.head, _checked(probe, model))[-1][0] == 1


def test_the_head_projects_only_read_positions_and_scores_are_unchanged() -> None:
    model = _gpt()
    assert find_head(model, "auto", 256) is model.head
    fast = _checked(KeywordProbe(PAIRS, ByteTokenizer()), model)
    full = KeywordProbe(PAIRS, ByteTokenizer(), head=None)
    shapes = _head_rows(model, model.head, fast)
    n_read = sum(len(it.target) for it in fast.items)
    assert shapes[-1] == (1, n_read, 256)  # one row per read position, not batch x length
    a, b = fast.read(model), full.read(model)
    torch.testing.assert_close(a.logp_seq, b.logp_seq, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.logp_first, b.logp_first, rtol=0, atol=1e-5)
    assert torch.equal(a.rank, b.rank)
    for i, item in enumerate(fast.items):  # and both equal a one-pair-at-a-time reference
        ref = brute_force_pair(lambda ids: model(ids), item.context, item.target)
        assert abs(float(a.logp_seq[i]) - ref["logp_seq"]) < 1e-5 and int(a.rank[i]) == ref["rank"]


def test_hf_gpt2_head_is_found_and_scores_match_full_logits() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=256, n_positions=64)
    gpt2 = transformers.GPT2LMHeadModel(config)
    assert find_head(gpt2, "auto", 256) is gpt2.lm_head
    fast = _checked(KeywordProbe(PAIRS, ByteTokenizer()), gpt2)
    full = KeywordProbe(PAIRS, ByteTokenizer(), head=None)
    shapes = _head_rows(gpt2, gpt2.lm_head, fast)
    assert shapes[-1][0] == 1 and shapes[-1][1] == sum(len(it.target) for it in fast.items)
    torch.testing.assert_close(fast.read(gpt2).logp_seq, full.read(gpt2).logp_seq, rtol=0, atol=1e-5)


def test_a_model_that_mixes_positions_after_the_head_falls_back_to_full_logits() -> None:
    model = _Mixing()
    probe = KeywordProbe(PAIRS, ByteTokenizer())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _checked(probe, model).read(model)
    assert any("Scoring with full logits" in str(w.message) for w in caught)
    assert probe.reader.head is not None and probe.reader.head.verified is False
    full = KeywordProbe(PAIRS, ByteTokenizer(), head=None).read(model)  # what the fallback must compute
    assert torch.equal(got.logp_seq, full.logp_seq) and torch.equal(got.rank, full.rank)


def test_a_named_head_and_bad_names() -> None:
    model = _gpt()
    assert find_head(model, "head", None) is model.head
    assert find_head(model, None, 256) is None
    with pytest.raises(ValueError, match="no attribute path 'decoder.out'"):
        find_head(model, "decoder.out", 256)
    with pytest.raises(ValueError, match="`head` to be 'auto', an attribute path, or None"):
        KeywordProbe(PAIRS, ByteTokenizer(), head="")
