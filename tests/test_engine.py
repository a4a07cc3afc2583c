"""The batched engine against a one-pair-at-a-time brute force, on the tiny byte-level GPT."""

from __future__ import annotations

import math
import random

import pytest
import torch

from probes import ProbeSet, ScoringPlan, isolated_eval, tokenize_pairs
from probes.core.model_io import as_encoder, make_logits_fn
from probes.core.plan import TokenizedItem, split_at_boundary
from probes.demos import THEMES
from tests.reference import brute_force_pair


def _pairs(n_extra_keywords: int = 3) -> ProbeSet:
    keywords = ["yellow", "vermilion", "b", "sweet", "loud"]
    pairs = []
    for t in THEMES:
        for s in list(t.facts)[:4]:
            for kw in keywords[:n_extra_keywords]:
                pairs.append((f"{t.name}:{s}:{kw}", t.context(s), kw, t.name))
    return ProbeSet(pairs)


def test_engine_matches_brute_force(tiny_gpt, byte_tok):
    pairs = _pairs()
    items = tokenize_pairs(pairs, as_encoder(byte_tok))
    refs = [  # independent split: bytes never merge; the separator is scored with the keyword
        brute_force_pair(tiny_gpt, byte_tok.encode(p.context), byte_tok.encode(" " + p.keyword)) for p in pairs
    ]
    for token_budget in (16384, 64, 1):  # one batch, several, one row per batch
        plan = ScoringPlan(items, vocab_size=256, max_positions=64, token_budget=token_budget)
        with isolated_eval(tiny_gpt):
            scores = plan.run(make_logits_fn(tiny_gpt), torch.device("cpu"))
        _check(pairs, scores, refs)


def _check(pairs, scores, refs):
    for i, (pair, ref) in enumerate(zip(pairs, refs)):
        assert scores.p_first[i].item() == pytest.approx(ref["p_first"], rel=1e-5, abs=1e-7)
        assert scores.logp_seq[i].item() == pytest.approx(ref["logp_seq"], rel=1e-5, abs=1e-5)
        assert scores.logp_first[i].item() == pytest.approx(ref["logp_first"], rel=1e-5, abs=1e-5)
        assert int(scores.rank[i]) == ref["rank"]
        assert int(scores.n_tokens[i]) == len(pair.keyword) + 1  # the separator byte, then the keyword


def test_shared_contexts_share_rows(byte_tok):
    # single-token keywords after one context need a single forward row
    items = [TokenizedItem(f"k{c}", (1, 2, 3), (c,)) for c in range(10)]
    plan = ScoringPlan(items, vocab_size=256)
    assert plan.n_rows == 1
    # a row that is a prefix of another is served by the longer one
    items.append(TokenizedItem("multi", (1, 2, 3), (7, 8, 9)))
    plan = ScoringPlan(items, vocab_size=256)
    assert plan.n_rows == 1 and plan.n_forward_tokens == 5


def test_budget_packs_length_sorted_batches():
    rng = random.Random(0)
    items = [
        TokenizedItem(f"i{i}", tuple(rng.randrange(50) for _ in range(rng.randint(1, 20))), (rng.randrange(50),))
        for i in range(100)
    ]
    plan = ScoringPlan(items, vocab_size=50, token_budget=60)
    for b in plan._batches:
        widths = [len(r) for r in b.rows]
        assert widths == sorted(widths, reverse=True)
        assert len(b.rows) * widths[0] <= 60 or len(b.rows) == 1


def test_random_items_match_brute_force(tiny_gpt):
    rng = random.Random(1)
    items = [
        TokenizedItem(
            f"i{i}",
            tuple(rng.randrange(256) for _ in range(rng.randint(1, 12))),
            tuple(rng.randrange(256) for _ in range(rng.randint(1, 4))),
        )
        for i in range(40)
    ]
    plan = ScoringPlan(items, vocab_size=256, token_budget=100)
    with isolated_eval(tiny_gpt):
        scores = plan.run(make_logits_fn(tiny_gpt), torch.device("cpu"))
    for i, it in enumerate(items):
        ref = brute_force_pair(tiny_gpt, it.context, it.target)
        assert scores.logp_seq[i].item() == pytest.approx(ref["logp_seq"], abs=1e-5)
        assert scores.logp_first[i].item() == pytest.approx(math.log(ref["p_first"]), abs=1e-5)
        assert int(scores.rank[i]) == ref["rank"]


def test_split_at_boundary_moves_merged_tokens_to_keyword():
    assert split_at_boundary([5, 6, 7], [5, 6, 7, 8]) == ((5, 6, 7), (8,))
    # the tokenizer merged the context's last token with the keyword's first
    assert split_at_boundary([5, 6, 7], [5, 6, 9, 8]) == ((5, 6), (9, 8))


def test_isolated_eval_restores_modes_rng_and_grads(tiny_gpt):
    tiny_gpt.train()
    tiny_gpt.blocks[0].eval()  # a submodule deliberately in eval mode must stay so
    for p in tiny_gpt.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = torch.get_rng_state()
    with isolated_eval(tiny_gpt):
        assert not tiny_gpt.training
        torch.rand(3)  # consumes RNG inside
        out = tiny_gpt(torch.tensor([[1, 2, 3]]))
        assert not out.requires_grad
    assert tiny_gpt.training and not tiny_gpt.blocks[0].training and tiny_gpt.blocks[1].training
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in tiny_gpt.parameters())


def test_truncation_left_matches_brute_force_on_kept_tokens(tiny_gpt):
    long_ctx = tuple(range(1, 80))
    item = TokenizedItem("long", long_ctx, (5, 6))
    with pytest.raises(ValueError, match=r"'long'.*79 tokens.*2 tokens.*80 positions.*model's 64.*truncation='left'"):
        ScoringPlan([item], vocab_size=256, max_positions=64)
    with pytest.warns(UserWarning, match="Left-truncated"):
        plan = ScoringPlan([item], vocab_size=256, max_positions=64, truncation="left")
    with isolated_eval(tiny_gpt):
        scores = plan.run(make_logits_fn(tiny_gpt), torch.device("cpu"))
    kept = long_ctx[-63:]  # 63 context tokens + 1 keyword token fed = 64 positions
    ref = brute_force_pair(tiny_gpt, kept, (5, 6))
    assert scores.logp_seq[0].item() == pytest.approx(ref["logp_seq"], abs=1e-5)


def test_vocab_validation_names_item():
    with pytest.raises(ValueError, match=r"'bad'.*keyword token id 300.*\[0, 256\)"):
        ScoringPlan([TokenizedItem("bad", (1, 2), (300,))], vocab_size=256)


def test_vocab_validated_on_first_run_when_unknown(tiny_gpt):
    plan = ScoringPlan([TokenizedItem("bad", (1, 2), (999,))])
    with pytest.raises(ValueError, match=r"'bad'.*999"):
        with isolated_eval(tiny_gpt):
            plan.run(make_logits_fn(tiny_gpt), torch.device("cpu"))


def test_last_position_only_model_gets_clear_error():
    class LastOnly(torch.nn.Module):
        def forward(self, ids):
            return torch.zeros(ids.shape[0], 1, 10)

    plan = ScoringPlan([TokenizedItem("a", (1, 2), (3,))], vocab_size=10)
    with pytest.raises(ValueError, match="logits for every position"):
        plan.run(make_logits_fn(LastOnly()), torch.device("cpu"))
