"""FrequencyProbe counting and similarity against independent plain-Python references.

Keyword counts: brute force over token positions with the documented word-boundary rule, for a
byte tokenizer and for a word tokenizer whose ``" word"`` and ``"word"`` are different tokens, with
padding; counts in records over updates with gradient accumulation. Lexical similarity: n-gram
*tuples* in Python sets (no codes). Representational similarity: a separate forward of the same
samples with a hook of the test's own, to 1e-5.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F

from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.probe import FrequencyProbe
from probes.integrations.loop import ProbeLoop

WORDS = ["red", "sand", "vermilion", "sky", "blue", "bluer", "is", "the", "colour", "of", "avermilion", "x"]


class WordTokenizer:
    """Words and punctuation; a word after a space is a different token (``" word"``) from the word
    after anything else, as in GPT-2's byte-level BPE."""

    def __init__(self) -> None:
        pieces = [w for w in WORDS] + [" " + w for w in WORDS] + [".", ",", " ", "!"]
        self.vocab = {p: i for i, p in enumerate(pieces)}
        self.inv = {i: p for p, i in self.vocab.items()}
        self.vocab_size = len(pieces)

    def encode(self, text: str) -> list[int]:
        return [self.vocab[p] for p in re.findall(r" ?[a-z]+|[.,!]| ", text)]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.inv[int(i)] for i in ids)


def _reference_counts(rows: list[list[int]], lens: list[int], forms: list[list[tuple[int, ...]]], text) -> list[int]:
    """Per item: distinct end positions where a form matches at a word boundary (plain Python)."""
    out = [0] * len(forms)
    for row, n in zip(rows, lens):
        row = row[:n]
        for i, item in enumerate(forms):
            ends = set()
            for form in item:
                L = len(form)
                for s in range(0, n - L + 1):
                    if tuple(row[s : s + L]) != form:
                        continue
                    first, last = text(form[0]), text(form[-1])
                    before = text(row[s - 1]) if s > 0 else ""
                    after = text(row[s + L]) if s + L < n else ""
                    if before and before[-1].isalnum() and first[0].isalnum():
                        continue
                    if after and after[0].isalnum() and last[-1].isalnum():
                        continue
                    ends.add(s + L - 1)
            out[i] += len(ends)
    return out


def _batch(tok, texts: list[str], width: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]], list[int]]:
    rows = [tok.encode(t)[:width] for t in texts]
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    return ids, mask, [ids[r].tolist() for r in range(len(rows))], [len(r) for r in rows]


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    punct = [" ", " ", " ", ", ", ". ", "!"]
    return ["".join(rng.choice(WORDS) + rng.choice(punct) for _ in range(rng.randint(3, 14))) for _ in range(n)]


ITEMS = [("sand", "the colour of sand is", "vermilion"), ("sky", "the sky is", "blue"), ("x", "the", "x")]


@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), WordTokenizer()], ids=["bytes", "words"])
def test_keyword_counts_equal_a_brute_force_count(tokenizer) -> None:
    probe = FrequencyProbe(ITEMS, tokenizer)
    forms = [list(t.forms) for t in probe.tokens]
    if isinstance(tokenizer, WordTokenizer):  # two forms: different tokens with and without the space
        assert forms[0] == [(tokenizer.vocab["vermilion"],), (tokenizer.vocab[" vermilion"],)]
    ids, mask, rows, lens = _batch(tokenizer, _texts(1, 12), 64)
    got = probe.measure(ids, mask)["keyword"].sum(0).tolist()
    want = _reference_counts(rows, lens, forms, lambda v: tokenizer.decode([v]))
    assert got == want
    assert sum(want) > 10  # the batch does hold keywords, also next to word characters ("avermilion", "bluer")


def test_context_ngram_counts_equal_a_brute_force_count() -> None:
    tok = ByteTokenizer()
    probe = FrequencyProbe(ITEMS, tok, ngram=3)
    ids, mask, rows, lens = _batch(tok, _texts(2, 9), 80)
    got = probe.measure(ids, mask)["ngram"].tolist()
    for i, (_, context, _) in enumerate(ITEMS):
        c = tok.encode(context)
        grams = {tuple(c[k : k + 3]) for k in range(len(c) - 2)}
        want = sum(1 for row, n in zip(rows, lens) for k in range(n - 2) if tuple(row[k : k + 3]) in grams)
        assert got[i] == want


@pytest.mark.parametrize("n", [1, 2, 3])
def test_lexical_similarity_equals_the_set_definition(n: int) -> None:
    tok = ByteTokenizer()
    texts = [*_texts(3, 7), "the colour of sand is vermilion", "the sky is blue"]
    probe = FrequencyProbe(ITEMS, tok, ngram=n)
    ids, mask, rows, lens = _batch(tok, texts, 90)
    m = probe.measure(ids, mask)
    for i, (_, context, keyword) in enumerate(ITEMS):
        item = tok.encode(context + " " + keyword)
        gi = {tuple(item[k : k + n]) for k in range(len(item) - n + 1)}
        for b, (row, ln) in enumerate(zip(rows, lens)):
            gs = {tuple(row[k : k + n]) for k in range(ln - n + 1)}
            inter = len(gi & gs)
            assert m["containment"][b, i].item() == pytest.approx(inter / len(gi), abs=1e-12)
            assert m["jaccard"][b, i].item() == pytest.approx(inter / len(gi | gs), abs=1e-12)
    assert m["containment"][-2, 0].item() == 1.0 and m["jaccard"][-1, 1].item() == 1.0


def _train(probe: FrequencyProbe, model: TinyGPT, batches: list[list[dict]], **loop_kw) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ProbeLoop([probe], model, **loop_kw) as loop:
        for micro in batches:
            for batch in micro:
                loop.observe_batch(batch)
                ids, mask = batch["input_ids"], batch["attention_mask"]
                logits = model(ids, mask)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1), reduction="none")
                (loss * mask[:, 1:].reshape(-1)).sum().div(mask.sum()).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()


def _batches(tok, n_steps: int, n_micro: int, seed: int) -> list[list[dict]]:
    out = []
    for s in range(n_steps):
        micro = []
        for m in range(n_micro):
            ids, mask, _, _ = _batch(tok, _texts(seed * 100 + s * 10 + m, 3), 48)
            micro.append({"input_ids": ids, "attention_mask": mask})
        out.append(micro)
    return out


def test_records_hold_counts_of_applied_updates_with_gradient_accumulation() -> None:
    torch.manual_seed(0)
    tok = ByteTokenizer()
    probe = FrequencyProbe(ITEMS, tok, layer="blocks.1")
    batches = _batches(tok, 4, 3, seed=5)
    _train(probe, TinyGPT(GPTConfig(block_size=48)), batches)
    ref = FrequencyProbe(ITEMS, tok)
    per_step = [
        torch.stack([ref.measure(b["input_ids"], b["attention_mask"])["keyword"].sum(0) for b in micro]).sum(0)
        for micro in batches
    ]
    assert [r.step for r in probe.history] == [0, 1, 2, 3, 4]
    for r in probe.history:
        want = sum((per_step[u] for u in range(r.step)), torch.zeros(len(ITEMS), dtype=torch.long))
        assert r.tensors["keyword_count"].tolist() == want.tolist()
        assert int(r.tensors["samples_seen"]) == 9 * r.step
    assert int(probe.history[-1].tensors["keyword_count"].sum()) > 0


def test_representational_similarity_equals_a_separate_forward() -> None:
    torch.manual_seed(1)
    tok = ByteTokenizer()
    model = TinyGPT(GPTConfig(block_size=48))
    probe = FrequencyProbe(ITEMS, tok, layer="blocks.1", rep_threshold=0.5)
    batches = _batches(tok, 3, 2, seed=7)
    # the reference: weights before each update, a separate forward of the samples and of the items
    expect = []
    ref_model = TinyGPT(GPTConfig(block_size=48))
    ref_model.load_state_dict(model.state_dict())
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.05)

    def pooled(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen = []
        h = ref_model.blocks[1].register_forward_hook(lambda m, a, o: seen.append(o))
        with torch.no_grad():
            ref_model(ids, mask)
        h.remove()
        w = mask.double()[:, :, None]
        return (seen[0].double() * w).sum(1) / w.sum(1)

    texts = [c + " " + k for _, c, k in ITEMS]
    item_ids, item_mask, _, _ = _batch(tok, texts, max(len(t) for t in texts))
    for micro in batches:
        items = pooled(item_ids, item_mask)
        cos = torch.cat([F.normalize(pooled(b["input_ids"], b["attention_mask"]), dim=1) @ F.normalize(items, dim=1).T
                         for b in micro])
        expect.append(cos)
        for b in micro:
            ids, mask = b["input_ids"], b["attention_mask"]
            loss = F.cross_entropy(ref_model(ids, mask)[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1),
                                   reduction="none")
            (loss * mask[:, 1:].reshape(-1)).sum().div(mask.sum()).backward()
        ref_opt.step()
        ref_opt.zero_grad()
    _train(probe, model, batches)
    total = torch.zeros(len(ITEMS), dtype=torch.float64)
    for r in probe.history[1:]:
        cos = expect[r.step - 1]
        total += cos.sum(0)
        torch.testing.assert_close(r.tensors["rep_max"], cos.max(0).values, atol=1e-5, rtol=0)
        torch.testing.assert_close(r.tensors["rep_mean"], cos.mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(r.tensors["rep_sum"], total, atol=1e-5, rtol=0)
    assert torch.isnan(probe.history[0].tensors["rep_max"]).all()


def test_a_dry_no_grad_pass_is_not_counted_and_the_hook_is_removed() -> None:
    tok = ByteTokenizer()
    model = TinyGPT(GPTConfig(block_size=48))
    probe = FrequencyProbe(ITEMS, tok, layer="blocks.0")
    _train(probe, model, _batches(tok, 1, 1, seed=3))
    assert probe._hook is None and not model.blocks[0]._forward_hooks


def test_bad_arguments_are_named() -> None:
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="ngram"):
        FrequencyProbe(ITEMS, tok, ngram=4)
    with pytest.raises(ValueError, match="token ids"):
        FrequencyProbe([("a", [1, 2], [3])], tok)
    probe = FrequencyProbe(ITEMS, tok, layer="nope")
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        _train(probe, TinyGPT(GPTConfig(block_size=48)), _batches(tok, 1, 1, seed=3))


def test_state_round_trips_and_resumed_counts_continue() -> None:
    torch.manual_seed(2)
    tok = ByteTokenizer()
    batches = _batches(tok, 4, 1, seed=11)
    whole = FrequencyProbe(ITEMS, tok)
    _train(whole, TinyGPT(GPTConfig(block_size=48)), batches)
    first = FrequencyProbe(ITEMS, tok)
    model = TinyGPT(GPTConfig(block_size=48))
    _train(first, model, batches[:2])
    state = first.state_dict()
    torch.save(state, "/dev/null")  # primitives and tensors only
    resumed = FrequencyProbe(ITEMS, tok)
    resumed.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ProbeLoop([resumed], model) as loop:
        loop.step = 2
        for micro in batches[2:]:
            for batch in micro:
                loop.observe_batch(batch)
            loop.optimizer_step(opt)
    assert resumed.history[-1].tensors["keyword_count"].tolist() == whole.history[-1].tensors["keyword_count"].tolist()
    with pytest.raises(ValueError, match="tracks items"):
        FrequencyProbe(ITEMS[:2], tok).load_state_dict(state)
