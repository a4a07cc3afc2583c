"""FormatProbe's sampled mode against an exact reference written for this test, without the
library's sampler: formats that depend on the first *two* sampled tokens have a probability that
one forward of each prompt and one of each prompt + first token give exactly, at any temperature.

    P("two letters") = sum_{a in a-z} p_T(a | prompt) * sum_{b in a-z} p_T(b | prompt + a)
    P("space first") = p_T(" " | prompt)

with ``p_T = softmax(logits / T)``. The probe's distribution over many samples must agree within
a binomial bound (5 standard errors), at T = 1 and at T = 0.6; and at T = 0 (greedy) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes.callbacks import FormatProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM
from probes.formats.sampling import SamplerConfig
from probes.formats.spec import Format, FormatSpec

PROMPTS = ["the colo", "the colour of", "3+4 ="]  # mid-word, before a word, before a digit
LETTERS = [ord(c) for c in "abcdefghijklmnopqrstuvwxyz"]
SPACE = ord(" ")
SPEC = FormatSpec([Format("two_letters", regex=r"\A[a-z][a-z]"), Format("space_first", regex=r"\A ")])
N = 1500


_TRAINED: dict[str, torch.Tensor] = {}


def _module() -> TinyLM:
    """The tiny LM after 60 steps on the themed corpus (trained once per session), so every
    format bucket has a clearly measurable mass."""
    import lightning.pytorch as pl

    from probes.demos import corpus_loader
    from tests.helpers import fast_trainer

    pl.seed_everything(3, verbose=False)
    module = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))
    if not _TRAINED:
        fast_trainer(max_steps=60).fit(module, corpus_loader(n_windows=16 * 60, batch_size=16, block_size=32))
        _TRAINED.update({k: v.clone() for k, v in module.state_dict().items()})
    module.load_state_dict(_TRAINED)
    return module.eval()


def _next_probs(model: torch.nn.Module, ids: list[int], temperature: float) -> np.ndarray:
    """p_T(next token | ids) by one unbatched forward, float64 softmax written out."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))
        logits = getattr(logits, "logits", logits)
        if isinstance(logits, tuple):
            logits = logits[0]
        z = logits[0, -1].double().numpy()
    if temperature == 0:
        out = np.zeros_like(z)
        out[int(np.argmax(z))] = 1.0
        return out
    z = z / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def exact_distribution(model: torch.nn.Module, temperature: float) -> np.ndarray:
    """[two_letters, space_first, other], averaged over the prompts (each prompt sampled equally)."""
    tok = ByteTokenizer()
    rows = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        first = _next_probs(model, ids, temperature)
        two_letters = sum(first[a] * _next_probs(model, [*ids, a], temperature)[LETTERS].sum() for a in LETTERS)
        space = first[SPACE]
        rows.append([two_letters, space, 1.0 - two_letters - space])
    return np.mean(rows, axis=0)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampled_distribution_matches_the_exact_two_token_probabilities(temperature: float) -> None:
    module = _module()
    want = exact_distribution(module.model, temperature)
    assert want.min() > 0.02  # every bucket is large enough to be measured
    cfg = SamplerConfig(temperature=temperature, max_new_tokens=2, seed=11)
    probe = FormatProbe(SPEC, mode="sampled", prompts=PROMPTS, tokenizer=ByteTokenizer(), model="model",
                        n_samples=N, sampler=cfg)
    got = probe.metrics(probe.read(module))["dist"].double().numpy()
    n = N * len(PROMPTS)
    bound = 5 * np.sqrt(want * (1 - want) / n)
    assert np.all(np.abs(got - want) <= bound), (got, want, bound)


def test_temperature_changes_the_distribution_the_way_the_reference_says() -> None:
    module = _module()
    hot, cold = exact_distribution(module.model, 1.0), exact_distribution(module.model, 0.6)
    assert np.abs(hot - cold).max() > 0.05  # the two temperatures are told apart by the test above
    assert math.isclose(hot.sum(), 1.0, rel_tol=1e-9) and math.isclose(cold.sum(), 1.0, rel_tol=1e-9)


def test_greedy_sampling_is_the_argmax_path() -> None:
    module = _module()
    want = exact_distribution(module.model, 0.0)  # 0 or 1 per prompt, averaged
    probe = FormatProbe(SPEC, mode="sampled", prompts=PROMPTS, tokenizer=ByteTokenizer(), model="model",
                        n_samples=4, sampler=SamplerConfig(temperature=0.0, max_new_tokens=2))
    got = probe.metrics(probe.read(module))["dist"].double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
