"""Engine vs brute force on a Hugging Face GPT-2 built from a small config with a BPE tokenizer
trained inside the test (random weights, nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from probes import KeywordProbe, ProbeSet  # noqa: E402
from probes.demos import THEMES, make_corpus  # noqa: E402
from tests.reference import brute_force_pair  # noqa: E402


@pytest.fixture(scope="module")
def bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<pad>"]
    )
    tok.train_from_iterator([make_corpus(600, seed=3)], trainer=trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2(bpe):
    cfg = transformers.GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=48, n_embd=32, n_layer=2, n_head=2)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _pairs() -> ProbeSet:
    keywords = ["yellow", "vermilion", "sweet", "xq"]
    return ProbeSet(
        [(f"{t.name}:{s}:{k}", t.context(s), k) for t in THEMES for s in list(t.facts)[:3] for k in keywords]
    )


def _reference(gpt2, bpe, pair):
    """Split by character offsets (independent of the engine): a token belongs to the keyword iff
    it ends after the context's last character, so the separator is scored with the keyword whether
    it is a lone token or merged into the word (the library's score convention)."""
    text = pair.context + " " + pair.keyword
    enc = bpe.encode(text, add_special_tokens=False)
    boundary = len(pair.context)
    ctx = [i for i, (_, e) in zip(enc.ids, enc.offsets) if e <= boundary]
    kw = [i for i, (_, e) in zip(enc.ids, enc.offsets) if e > boundary]
    return brute_force_pair(lambda ids: gpt2(ids).logits, ctx, kw), kw


@pytest.mark.parametrize("wrap", ["tokenizers", "transformers"])
def test_keyword_probe_matches_brute_force_on_gpt2(gpt2, bpe, wrap):
    tokenizer = bpe if wrap == "tokenizers" else transformers.PreTrainedTokenizerFast(tokenizer_object=bpe)
    pairs = _pairs()
    probe = KeywordProbe(pairs, tokenizer, token_budget=200)
    scores = probe.read(gpt2)
    assert probe.reader.plan.n_batches > 1  # padding and several micro-batches are exercised
    for i, pair in enumerate(pairs):
        ref, kw = _reference(gpt2, bpe, pair)
        assert list(probe.items[i].target) == kw
        assert scores.p_first[i].item() == pytest.approx(ref["p_first"], rel=1e-5, abs=1e-7)
        assert scores.logp_seq[i].item() == pytest.approx(ref["logp_seq"], abs=1e-5)
        assert int(scores.rank[i]) == ref["rank"]


def test_multi_token_keywords_are_present(bpe):
    probe = KeywordProbe(_pairs(), bpe)
    assert max(len(it.target) for it in probe.items) >= 2  # 'vermilion' / 'xq' split into several BPE tokens


def test_vocab_and_positions_inferred_from_hf_config(gpt2, bpe):
    probe = KeywordProbe([("a", "the colour of sand is", "yellow")], bpe)
    probe.reader.bind(gpt2)
    assert probe.reader.plan.vocab_size == gpt2.config.vocab_size
    assert probe.reader.plan.max_positions == 48
    long = KeywordProbe([("long", "the colour of sand is " * 30, "yellow")], bpe)
    with pytest.raises(ValueError, match=r"'long'.*more than the model's 48"):
        long.reader.bind(gpt2)
