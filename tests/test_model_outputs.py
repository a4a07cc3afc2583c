"""The README's model contract: logits as a tensor, an object with ``.logits``, a dict with
``"logits"``, a tuple's first item, or anything through ``logits_fn=``; a TypeError that says how
to fix an unrecognised output. And the probe's cost: one forward set per optimizer step for
KeywordProbe and PrimingProbe, counted with a forward hook.

References are the brute-force one-pair scores of ``tests/reference.py`` on the bare model.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from probes import KeywordProbe, LearningSample, PrimingProbe
from probes.core.model_io import extract_logits, make_logits_fn
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT, TinyLM, corpus_loader
from tests.helpers import fast_trainer
from tests.reference import brute_force_pair

PAIRS = [("sand", "the colour of sand is", "yellow"), ("sky", "the colour of the sky is", "blue")]


def _gpt() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48)).eval()


class Wrapped(nn.Module):
    """The tiny GPT behind an output of another shape."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.gpt = _gpt()
        self.kind = kind

    def forward(self, input_ids: torch.Tensor) -> Any:
        logits = self.gpt(input_ids)
        if self.kind == "tuple":  # nanoGPT style: (logits, loss)
            return logits, None
        if self.kind == "list":
            return [logits, torch.zeros(())]
        if self.kind == "dict":
            return {"loss": None, "logits": logits}
        if self.kind == "object":  # Hugging Face style
            return SimpleNamespace(logits=logits, loss=None)
        if self.kind == "hidden":  # not logits in any recognisable place
            return {"hidden": logits}
        raise ValueError(self.kind)


def _reference(model: nn.Module) -> list[dict[str, float]]:
    tok = ByteTokenizer()
    return [brute_force_pair(model, tok.encode(c), tok.encode(" " + k)) for _, c, k in PAIRS]


def _check(scores: Any, ref: list[dict[str, float]]) -> None:
    for j, r in enumerate(ref):
        assert float(scores.logp_seq[j]) == pytest.approx(r["logp_seq"], abs=1e-4)
        assert float(scores.logp_first[j]) == pytest.approx(r["logp_first"], abs=1e-5)
        assert int(scores.rank[j]) == r["rank"]


@pytest.mark.parametrize("kind", ["tuple", "list", "dict", "object"])
def test_every_output_shape_scores_like_the_bare_model(kind: str) -> None:
    model = Wrapped(kind)
    probe = KeywordProbe(PAIRS, ByteTokenizer())
    _check(probe.read(model), _reference(model.gpt))


def test_logits_fn_adapts_any_call() -> None:
    model = Wrapped("hidden")
    calls: list[tuple[int, ...]] = []

    def logits_fn(module: nn.Module, ids: torch.Tensor, mask: Any) -> torch.Tensor:
        calls.append(tuple(ids.shape))
        assert module is model
        return module(ids)["hidden"]

    probe = KeywordProbe(PAIRS, ByteTokenizer(), logits_fn=logits_fn)
    _check(probe.read(model), _reference(model.gpt))
    assert calls and all(len(shape) == 2 for shape in calls)


def test_an_unrecognised_output_is_a_type_error_that_says_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"Could not find logits in a model output of type dict.*`logits_fn`"):
        extract_logits({"hidden": torch.zeros(1, 2, 3)})
    with pytest.raises(TypeError, match="of type str"):
        extract_logits("logits")
    with pytest.raises(TypeError, match="of type tuple"):
        extract_logits(())  # an empty tuple has no first item
    fn = make_logits_fn(Wrapped("hidden"))
    with pytest.raises(TypeError, match="Could not find logits"):
        fn(torch.zeros(1, 4, dtype=torch.long), None)


def test_an_unrecognised_output_fails_the_probe_clearly() -> None:
    probe = KeywordProbe(PAIRS, ByteTokenizer())
    with pytest.raises((TypeError, ValueError), match="logits_fn"):
        probe.read(Wrapped("hidden"))


# --- one forward set per optimizer step -------------------------------------------------------


class CountingLM(TinyLM):
    """Counts forwards of the inner GPT that run without grad (the probe's; training runs with grad)."""

    def __init__(self) -> None:
        super().__init__(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48), lr=1e-3)
        self.probe_forwards: list[int] = []  # global_step at each no-grad forward
        self.rows: list[int] = []
        self.counting = False  # from the first training batch on (setup may run a one-row dry forward)
        self.model.register_forward_hook(self._hook)

    def on_train_start(self) -> None:
        self.counting = True

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.counting and not torch.is_grad_enabled():
            self.probe_forwards.append(self.trainer.global_step)
            self.rows.append(int(args[0].shape[0]))


def _fit(callbacks: list[pl.Callback], steps: int) -> CountingLM:
    pl.seed_everything(0, verbose=False)
    module = CountingLM()
    loader = corpus_loader(n_windows=8 * steps, batch_size=8, block_size=32)
    fast_trainer(callbacks, max_steps=steps).fit(module, loader)
    return module


def test_keyword_probe_runs_one_forward_set_per_step() -> None:
    steps = 6
    probe = KeywordProbe(PAIRS, ByteTokenizer(), model="model")
    module = _fit([probe], steps)
    per_step = [module.probe_forwards.count(s) for s in range(steps + 1)]
    # both pairs fit one micro-batch: one forward per optimizer step plus the final reading
    assert per_step == [1] * (steps + 1), per_step
    assert [r.step for r in probe.history] == list(range(steps + 1))
    assert set(module.rows) == {2}  # both pairs in that one forward


def test_priming_probe_runs_one_forward_set_per_step() -> None:
    steps = 6
    fact = LearningSample("pearl", "the colour of a pearl is vermilion", "vermilion",
                          ["the colour of the sky is", "the colour of sand is"])
    probe = PrimingProbe([fact], ByteTokenizer(), model="model", baseline=0)
    keyword = KeywordProbe(PAIRS, ByteTokenizer(), model="model")
    module = _fit([probe, keyword], steps)
    per_step = [module.probe_forwards.count(s) for s in range(steps + 1)]
    # one forward per step for both probes (they share a scoring hub: the learning context, both
    # prefixes and the keyword pairs go in one batch), plus the final reading
    assert per_step == [1] * (steps + 1), per_step
    assert [r.step for r in probe.history] == list(range(steps + 1))
