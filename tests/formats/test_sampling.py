"""The built-in sampler: determinism, isolation, greedy and nucleus references, KV cache, EOS."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from probes.demos import GPTConfig, TinyGPT
from probes.formats.sampling import SamplerConfig, nucleus_filter, offers_kv_cache, sample_ids


@pytest.fixture(scope="module")
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=16))


PROMPTS = [[104, 105], [1, 2, 3, 4], [7, 8], [50]]


def test_same_seed_same_completions_other_seed_differs(model):
    cfg = SamplerConfig(max_new_tokens=6, seed=3)
    a = sample_ids(model, PROMPTS, 5, cfg)
    b = sample_ids(model, PROMPTS, 5, cfg)
    c = sample_ids(model, PROMPTS, 5, SamplerConfig(max_new_tokens=6, seed=4))
    assert a == b
    assert a != c
    assert [len(x) for x in a] == [5] * len(PROMPTS)
    assert all(len(s) == 6 for x in a for s in x)


def test_batch_size_does_not_change_greedy_output(model):
    greedy = SamplerConfig(temperature=0, max_new_tokens=5)
    big = sample_ids(model, PROMPTS, 3, greedy)
    small = sample_ids(model, PROMPTS, 3, SamplerConfig(temperature=0, max_new_tokens=5, batch_size=2))
    assert big == small


def test_leaves_global_rng_and_modes_untouched(model):
    model.train()
    model.blocks[0].eval()  # a mixed-mode module: each flag must come back as it was
    modes = [m.training for m in model.modules()]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    sample_ids(model, PROMPTS, 4, SamplerConfig(max_new_tokens=4))
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_greedy_matches_a_brute_force_argmax_loop(model):
    got = sample_ids(model, PROMPTS, 1, SamplerConfig(temperature=0, max_new_tokens=7))
    for prompt, (completion,) in zip(PROMPTS, got):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(7):
                logits = model(torch.tensor([ids[-16:]]))[0, -1]
                ids.append(int(torch.argmax(logits)))
        assert completion == ids[len(prompt) :]


def test_window_slides_past_the_block_size(model):
    prompt = [list(range(1, 15))]  # 14 tokens, block_size 16: 7 new tokens need a sliding window
    (completion,) = sample_ids(model, prompt, 1, SamplerConfig(temperature=0, max_new_tokens=7))[0]
    ids = list(prompt[0])
    with torch.no_grad():
        for _ in range(7):
            ids.append(int(torch.argmax(model(torch.tensor([ids[-16:]]))[0, -1])))
    assert completion == ids[14:]


def _brute_force_nucleus(row: list[float], top_p: float) -> list[float]:
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))
    kept, total = set(), 0.0
    for i in order:
        kept.add(i)
        total += row[i]
        if total >= top_p:
            break
    z = sum(row[i] for i in kept)
    return [row[i] / z if i in kept else 0.0 for i in range(len(row))]


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.9, 0.999])
def test_nucleus_filter_matches_brute_force(top_p):
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(6, 11, generator=g, dtype=torch.float64) * 2, dim=-1)
    got = nucleus_filter(probs, top_p)
    ref = torch.tensor([_brute_force_nucleus(r, top_p) for r in probs.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


def test_first_token_frequencies_match_the_model_distribution(model):
    """4000 one-token samples: every token's frequency within 4.5 standard errors of softmax."""
    n = 4000
    cfg = SamplerConfig(max_new_tokens=1, temperature=0.7, top_p=0.9, seed=11)
    got = sample_ids(model, [[104, 105]], n, cfg)[0]
    counts = torch.bincount(torch.tensor([c[0] for c in got]), minlength=256).double()
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([[104, 105]]))[0, -1].double() / 0.7, dim=-1)
    p = torch.tensor(_brute_force_nucleus(p.tolist(), 0.9), dtype=torch.float64)
    se = (p * (1 - p) / n).sqrt().clamp_min(1e-3)
    assert counts[p == 0].sum() == 0
    assert bool(((counts / n - p).abs() <= 4.5 * se).all())


def test_eos_cuts_completions(model):
    first = sample_ids(model, [[104, 105]], 1, SamplerConfig(temperature=0, max_new_tokens=3))[0][0]
    eos = first[1]  # greedy output's second token: completions stop right before it
    got = sample_ids(model, [[104, 105]], 2, SamplerConfig(temperature=0, max_new_tokens=6, eos_id=eos))[0]
    assert got == [first[: first.index(eos)]] * 2


class CachedLM(torch.nn.Module):
    """A Hugging Face-style wrapper: the 'cache' is the ids seen so far; counts single-token calls."""

    def __init__(self, inner: TinyGPT) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        self.calls.append(input_ids.shape[1])
        ids = input_ids if past_key_values is None else torch.cat([past_key_values, input_ids], dim=1)
        logits = self.inner(ids)[:, -input_ids.shape[1] :]
        return SimpleNamespace(logits=logits, past_key_values=ids if use_cache else None)


def test_kv_cache_path_matches_the_plain_path(model):
    cached = CachedLM(model)
    assert offers_kv_cache(cached) and not offers_kv_cache(model)
    cfg = SamplerConfig(max_new_tokens=5, seed=9)
    with_cache = sample_ids(cached, PROMPTS, 3, cfg)
    # groups by prompt length (1, 2, 4): one pass over the prompt, then one token per call
    assert cached.calls == [1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 4, 1, 1, 1, 1]
    without = sample_ids(cached, PROMPTS, 3, SamplerConfig(max_new_tokens=5, seed=9, kv_cache=False))
    assert with_cache == without == sample_ids(model, PROMPTS, 3, cfg)
    with pytest.raises(ValueError, match="past_key_values"):
        sample_ids(model, PROMPTS, 1, SamplerConfig(kv_cache=True))
    with pytest.raises(ValueError, match="exceeds"):
        sample_ids(cached, [list(range(1, 15))], 1, SamplerConfig(max_new_tokens=5))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"seed": 1.5}, "seed"),
        ({"eos_id": -2}, "eos_id"),
        ({"kv_cache": "yes"}, "kv_cache"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**kwargs)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match="Prompt #1 is empty"):
        sample_ids(model, [[1], []], 1)
    with pytest.raises(ValueError, match="positive int"):
        sample_ids(model, [[1]], 0)
