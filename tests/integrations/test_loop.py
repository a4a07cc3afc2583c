"""The plain-loop adapter drives the same probes as Lightning and records the same values."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from probes import BenchmarkProbe, FormatProbe, IFDProbe, KeywordProbe, LearningSample, PrimingProbe, open_run
from probes.choice.spec import Benchmark
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.demos.lm import lm_loss
from probes.formats import Format, FormatSpec
from probes.integrations.loop import ProbeLoop
from probes.keyword.probe import KeywordProbe as PlainKeywordProbe
from tests.helpers import fact_pairs, fast_trainer

STEPS = 5
CONFIG = GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48)
CONTEXTS = ["the colour of the sky is", "the colour of sand is"]


def _probes() -> list[Any]:
    tok = ByteTokenizer()
    fact = LearningSample("sea", "the colour of the sea is blue", "blue", CONTEXTS)
    the, b = Format("the", regex=r"\A the", prefixes=(" the",)), Format("b", regex=r"\A b", prefixes=(" b",))
    formats = FormatSpec([the, b])
    bench = Benchmark("colours", [("the colour of sand is", ["yellow", "blue"], 0), ("the sky is", ["blue", "red"], 0)])
    return [
        KeywordProbe(fact_pairs(2), tok, model="model", every_n_steps=2),
        PrimingProbe([fact], tok, model="model"),
        FormatProbe(formats, mode="scored", prompts=CONTEXTS, tokenizer=tok, model="model", collapse=None),
        BenchmarkProbe(bench, tok, model="model", every_n_steps=3),
        IFDProbe([("s", "Q: colour of sand?", "A: yellow")], tok, prefix=". ", model="model", every_n_steps=2),
    ]


def _lightning_records() -> list[Any]:
    pl.seed_everything(0, verbose=False)
    module = TinyLM(CONFIG, lr=1e-2)
    probes = _probes()
    fast_trainer(probes, max_steps=STEPS).fit(module, corpus_loader(n_windows=4 * STEPS, batch_size=4, block_size=32))
    return probes


def _loop_records(tmp_path: Any) -> list[Any]:
    pl.seed_everything(0, verbose=False)
    module = TinyLM(CONFIG, lr=1e-2)
    optimizer = module.configure_optimizers()
    probes = _probes()
    with ProbeLoop(probes, module, run_log=tmp_path / "run") as loop:
        for batch in corpus_loader(n_windows=4 * STEPS, batch_size=4, block_size=32):
            loop.observe_batch(batch)
            loss = lm_loss(module(batch["input_ids"]), batch["labels"])
            loss.backward()
            loop.optimizer_step(optimizer)
            optimizer.zero_grad()
    return probes


def test_plain_loop_records_equal_lightning_records(tmp_path) -> None:
    lightning, plain = _lightning_records(), _loop_records(tmp_path)
    for a, b in zip(lightning, plain):
        assert [r.step for r in a.history] == [r.step for r in b.history], a.source
        assert [r.epoch for r in b.history] == [0] * len(b.history)
        for ra, rb in zip(a.history, b.history):
            assert ra.tensors.keys() == rb.tensors.keys()
            for name, value in ra.tensors.items():
                torch.testing.assert_close(
                    rb.tensors[name], value, rtol=1e-6, atol=1e-6, equal_nan=True, msg=f"{a.source}/{name}"
                )
    assert [r.step for r in plain[0].history] == [0, 2, 4, 5]  # every 2 steps, plus the final reading
    run = open_run(tmp_path / "run")  # the loop's run log holds every probe's records, and its status
    assert set(run.sources()) == {p.source for p in plain}
    assert run.status == "finished"
    steps, values = run.read("keyword/logp_seq")
    assert list(steps) == [0, 2, 4, 5]
    torch.testing.assert_close(torch.as_tensor(values[-1]), plain[0].history[-1].tensors["logp_seq"], rtol=0, atol=0)


def test_framework_free_probe_runs_in_a_loop_and_failures_mark_the_run(tmp_path) -> None:
    torch.manual_seed(0)
    module = TinyLM(CONFIG)
    probe = PlainKeywordProbe(fact_pairs(1), ByteTokenizer(), model="model")
    assert not isinstance(probe, pl.Callback)  # the class of probes.keyword.probe needs no Trainer
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="boom"), ProbeLoop([probe], module, run_log=tmp_path / "r") as loop:
        batch = next(iter(corpus_loader(n_windows=4, batch_size=4, block_size=32)))
        lm_loss(module(batch["input_ids"]), batch["labels"]).backward()
        loop.optimizer_step(optimizer)
        raise RuntimeError("boom")
    run = open_run(tmp_path / "r")
    assert run.status == "failed"
    assert [r.step for r in probe.history] == [0]  # nothing read after the failure


def test_loop_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one probe"):
        ProbeLoop([], torch.nn.Linear(1, 1))
    probes = [KeywordProbe(fact_pairs(1), ByteTokenizer()), KeywordProbe(fact_pairs(1), ByteTokenizer())]
    with pytest.raises(ValueError, match=r"share the name\(s\) \['keyword'\]"):
        ProbeLoop(probes, torch.nn.Linear(1, 1))
