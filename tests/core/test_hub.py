"""The scoring hub: probes on one model share one set of forwards per step, and every slice equals
what the probe reads alone (and a brute-force reference)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from probes import FormatProbe, KeywordProbe, LearningSample, PrimingProbe
from probes.core.context import TrainingContext
from probes.core.hub import Hubs
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.formats import Format, FormatSpec
from tests.helpers import fast_trainer
from tests.reference import brute_force_pair

CONTEXTS = ["the colour of the sky is", "the colour of sand is", "the colour of snow is"]
PAIRS = [(f"p{i}-{kw}", c, kw) for i, c in enumerate(CONTEXTS) for kw in ("blue", "white")]
FACT = LearningSample("pearl", "the colour of a pearl is vermilion", "vermilion", CONTEXTS)
FORMATS = FormatSpec(
    [Format("named", regex=r"\A the", prefixes=(" the",)), Format("colour", regex=r"\A b", prefixes=(" b",))]
)


class CountingLM(TinyLM):
    """Counts the no-grad forwards of the inner GPT (the probes'; training runs with grad) per step."""

    def __init__(self) -> None:
        super().__init__(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48), lr=1e-2)
        self.forwards: list[int] = []
        self.counting = False
        self.model.register_forward_hook(self._hook)

    def on_train_start(self) -> None:
        self.counting = True

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.counting and not torch.is_grad_enabled():
            self.forwards.append(self.trainer.global_step)


def _three(**scoring: Any) -> list[Any]:
    tok = ByteTokenizer()
    return [
        KeywordProbe(PAIRS, tok, model="model", **scoring),
        PrimingProbe([FACT], tok, model="model", baseline=0, **scoring),
        FormatProbe(FORMATS, mode="scored", prompts=CONTEXTS, tokenizer=tok, model="model", collapse=None, **scoring),
    ]


def _fit(probes: list[Any], steps: int = 4) -> CountingLM:
    pl.seed_everything(0, verbose=False)
    module = CountingLM()
    fast_trainer(probes, max_steps=steps).fit(module, corpus_loader(n_windows=8 * steps, batch_size=8, block_size=32))
    return module


def test_three_probes_sharing_contexts_run_one_set_of_forwards_per_step() -> None:
    steps = 4
    shared = _three()
    module = _fit(shared, steps)
    assert [module.forwards.count(s) for s in range(steps + 1)] == [1] * (steps + 1)  # one pass, three probes
    # the same probes with different options (separate hubs) cost one set of forwards each
    apart = [_three(token_budget=b)[i] for i, b in enumerate((4096, 4097, 4098))]
    module_apart = _fit(apart, steps)
    assert [module_apart.forwards.count(s) for s in range(steps + 1)] == [3] * (steps + 1)
    for a, b in zip(shared, apart):  # same training, same records, to float rounding
        assert [r.step for r in a.history] == [r.step for r in b.history] == list(range(steps + 1))
        for ra, rb in zip(a.history, b.history):
            for name, value in ra.tensors.items():
                torch.testing.assert_close(value, rb.tensors[name], rtol=1e-5, atol=1e-6, equal_nan=True, msg=name)
    # the keyword slice equals a one-pair-at-a-time brute-force reference at the final weights
    keyword = shared[0]
    last = keyword.history[-1].tensors
    forward = lambda ids: module.model(ids)  # noqa: E731
    for i, item in enumerate(keyword.items):
        ref = brute_force_pair(forward, item.context, item.target)
        assert abs(float(last["logp_seq"][i]) - ref["logp_seq"]) < 1e-5
        assert abs(float(last["logp_first"][i]) - ref["logp_first"]) < 1e-5
        assert int(last["rank"][i]) == ref["rank"]


def test_a_probe_off_its_schedule_is_not_scored_and_a_due_one_reads_its_slice() -> None:
    tok = ByteTokenizer()
    every2 = KeywordProbe(PAIRS, tok, model="model", every_n_steps=2)
    every1 = KeywordProbe(PAIRS[:2], tok, model="model", name="few")
    module = _fit([every1, every2], steps=3)
    assert [module.forwards.count(s) for s in range(4)] == [1, 1, 1, 1]
    assert [r.step for r in every2.history] == [0, 2, 3]  # 3: the final reading
    assert [r.step for r in every1.history] == [0, 1, 2, 3]
    # where both read, the shared pair's scores agree between the two probes
    for r2 in every2.history:
        r1 = next(r for r in every1.history if r.step == r2.step)
        torch.testing.assert_close(r1.tensors["logp_seq"], r2.tensors["logp_seq"][:2], rtol=0, atol=1e-6)


def test_a_slice_is_never_served_for_other_weights() -> None:
    tok = ByteTokenizer()
    a = KeywordProbe(PAIRS, tok, model="model", name="a")
    b = KeywordProbe(PAIRS[1:], tok, model="model", name="b")
    torch.manual_seed(0)
    module = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48))
    ctx = TrainingContext(module, step=0, hubs=Hubs())
    for probe in (a, b):
        probe.attach(ctx)
    hub = ctx.hubs.get(a.scoring)
    a.read_scores(ctx)  # scores b's items too, held for b
    assert hub.n_passes == 1
    with torch.no_grad():
        module.model.tok.weight.mul_(1.5)  # the weights change before b asks, at the same step
    got = b.read_scores(TrainingContext(module, step=0, hubs=ctx.hubs))
    assert hub.n_passes == 2  # recomputed, not the held slice
    fresh = b.read(module)
    torch.testing.assert_close(got.logp_seq, fresh.logp_seq, rtol=0, atol=1e-6)
