"""Shared contexts through a key/value cache: each distinct context forwarded once, the same scores
as a one-item-at-a-time reference, and the packed plan where the model has no cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from probes import KeywordProbe
from probes.core.context import TrainingContext
from probes.core.prefix import PrefixPlan, cache_parts
from probes.demos import GPTConfig, TinyGPT
from tests.reference import brute_force_pair

transformers = pytest.importorskip("transformers")

# 3 contexts of different lengths, each with 3 keywords of 1-3 tokens (token ids)
CONTEXTS = [[5, 9, 12, 40], [7, 7, 3, 21, 8, 30, 2], [11, 4]]
KEYWORDS = [[50], [51, 52], [60, 61, 62]]
PAIRS = [(f"c{c}k{k}", ctx, kw) for c, ctx in enumerate(CONTEXTS) for k, kw in enumerate(KEYWORDS)]


def _gpt2() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=64)
    return transformers.GPT2LMHeadModel(config).eval()  # no dropout in the references


def _checked(probe: KeywordProbe, model: Any) -> KeywordProbe:
    probe.check(TrainingContext(model, step=0))
    return probe


def test_contexts_are_forwarded_once_and_scores_match_the_reference() -> None:
    model = _gpt2()
    probe = _checked(KeywordProbe(PAIRS), model)
    assert probe.reader.prefix is not None and PrefixPlan.verdict(model) is True
    lengths: list[int] = []
    handle = model.transformer.register_forward_hook(
        lambda m, a, kw, out: lengths.append(kw["input_ids"].shape), with_kwargs=True
    )
    try:
        got = probe.read(model)
    finally:
        handle.remove()
    # one pass per context length (3 distinct lengths: no padding in a cache) and one for their tails
    assert sum(1 for s in lengths if s[0] == 1) == 3 and len(lengths) == 6
    forward = lambda ids: model(ids).logits  # noqa: E731
    for i, (_, ctx, kw) in enumerate(PAIRS):
        ref = brute_force_pair(forward, ctx, kw)
        assert abs(float(got.logp_seq[i]) - ref["logp_seq"]) < 1e-5, PAIRS[i][0]
        assert abs(float(got.logp_first[i]) - ref["logp_first"]) < 1e-5
        assert int(got.rank[i]) == ref["rank"]
    plain = _checked(KeywordProbe(PAIRS, kv_cache=False, head=None), model).read(model)
    torch.testing.assert_close(got.logp_seq, plain.logp_seq, rtol=0, atol=1e-5)


def test_models_without_a_cache_and_sets_without_shared_multi_token_contexts_use_the_packed_plan() -> None:
    torch.manual_seed(0)
    tiny = TinyGPT(GPTConfig(vocab_size=128, n_layer=1, n_embd=32, n_head=2, block_size=48))
    assert cache_parts(tiny) is None
    assert _checked(KeywordProbe(PAIRS), tiny).reader.prefix is None
    single = [(f"c{c}", ctx, [50]) for c, ctx in enumerate(CONTEXTS)]  # one-token keywords: nothing recomputed
    assert _checked(KeywordProbe(single), _gpt2()).reader.prefix is None


def test_a_cached_path_that_disagrees_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _gpt2()
    real = PrefixPlan.run

    def skewed(self: PrefixPlan, body: Any, head: Any, device: torch.device) -> Any:
        scores = real(self, body, head, device)
        scores.logp_seq = scores.logp_seq + 0.1
        return scores

    monkeypatch.setattr(PrefixPlan, "run", skewed)
    with pytest.warns(UserWarning, match="Scoring without a key/value cache"):
        probe = _checked(KeywordProbe(PAIRS), model)
    assert PrefixPlan.verdict(model) is False
    forward = lambda ids: model(ids).logits  # noqa: E731
    ref = brute_force_pair(forward, PAIRS[2][1], PAIRS[2][2])
    assert abs(float(probe.read(model).logp_seq[2]) - ref["logp_seq"]) < 1e-5
