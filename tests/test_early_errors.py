"""Errors before the first training step, non-finite model output, and compiled models."""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from probes import InjectedLoader, KeywordProbe, LearningSample, PrimingProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT, TinyLM
from probes.testing import ExpectationFailed, KeywordLearned, PrimingBelow, ProbeExpectations
from tests.testing.loops import fact_loader

CFG = GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64)
PAIR = ("sand", "the colour of sand is", "vermilion")


def _trainer(callbacks: list[Any], steps: int = 4) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )


class StepCounter(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_start(self, *args: Any) -> None:
        self.batches += 1


class Wrapped(pl.LightningModule):
    """A user's module whose forward takes a batch dict, with the LM nested inside."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyGPT(CFG)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["input_ids"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        return nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_forgotten_model_argument_fails_before_the_first_step() -> None:
    counter = StepCounter()
    probe = KeywordProbe([PAIR], ByteTokenizer())  # model=None: the LightningModule's forward takes a dict
    with pytest.raises(ValueError, match=r"dry forward.*`model=None`.*failed.*Pass `model=`.*`logits_fn=`") as err:
        _trainer([probe, counter]).fit(Wrapped(), fact_loader(2))
    assert counter.batches == 0  # no training step ran
    assert "KeywordProbe[keyword]" in str(err.value)
    # the fix named in the message works
    ok = KeywordProbe([PAIR], ByteTokenizer(), model="net")
    _trainer([ok], steps=1).fit(Wrapped(), fact_loader(1))
    assert len(ok.history) == 2


def test_max_positions_inferred_through_nested_modules() -> None:
    long = KeywordProbe([("long", "the colour of sand is " * 4, "vermilion")], ByteTokenizer())  # 96 tokens > 64
    with pytest.raises(ValueError, match=r"'long'.*more than the model's 64"):
        long.reader.bind(Wrapped())  # block_size found on the nested TinyGPT, no bare IndexError later


def test_max_positions_of_a_nested_hf_model() -> None:
    transformers = pytest.importorskip("transformers")

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cfg = transformers.GPT2Config(vocab_size=256, n_positions=40, n_embd=16, n_layer=1, n_head=2)
            self.inner = nn.ModuleDict({"lm": transformers.GPT2LMHeadModel(cfg)})

    probe = KeywordProbe([("long", "x" * 45, "vermilion")], ByteTokenizer())
    with pytest.raises(ValueError, match=r"'long'.*more than the model's 40"):
        probe.reader.bind(Holder())


def test_wrong_output_shape_fails_at_the_dry_forward() -> None:
    class LastOnly(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lm = nn.Linear(4, 256)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lm(torch.zeros(ids.shape[0], 1, 4))  # only the last position

    probe = KeywordProbe([PAIR], ByteTokenizer())
    with pytest.raises(ValueError, match=r"returned \[1, 1, 256\], expected logits of shape \[1, 30, vocab\]"):
        probe.reader.check(LastOnly())


@pytest.mark.parametrize("bad", [None, "abc", [1.5, 2.0], 7])
def test_tokenizer_returning_non_ids_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"tokenizer returned .* expected a list of int token ids"):
        KeywordProbe([PAIR], lambda text: bad)


def test_injected_sample_wider_than_the_loader_fails_before_training() -> None:
    sample = LearningSample("long", "the colour of the sea at dawn is " * 2 + "vermilion", "vermilion", ["the sky is"])
    counter = StepCounter()
    loader = InjectedLoader(fact_loader(3), [sample], ByteTokenizer(), presentations=1, start=2)
    with pytest.raises(ValueError, match=r"rows of 48 tokens: 'long' \(75 tokens\).*widen=True"):
        _trainer([counter]).fit(TinyLM(CFG), loader)
    assert counter.batches == 0  # refused when iteration starts, although the sample was due at batch 2
    # widen=True pads the minibatch that carries it instead
    widened = InjectedLoader(
        fact_loader(3), [sample], ByteTokenizer(), presentations=1, start=2, widen=True, labels="shifted"
    )
    batches = list(widened)
    tok = ByteTokenizer().encode(sample.text)
    assert batches[2]["input_ids"].shape == (16, len(tok)) and batches[2]["input_ids"][0].tolist() == tok
    assert batches[2]["labels"][1, 48:].tolist() == [-100] * (len(tok) - 48)  # padded rows learn nothing new
    assert batches[1]["input_ids"].shape == (16, 48)


class Poisoned(TinyLM):
    """Its model returns NaN logits from optimizer step ``at`` on (a diverged run)."""

    def __init__(self, at: int) -> None:
        super().__init__(CFG, lr=1e-3)
        self.at = at

    def forward(self, input_ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        out = self.model(input_ids)
        return out * float("nan") if self.trainer.global_step >= self.at else out


def test_nan_output_is_recorded_flagged_and_warned_once() -> None:
    probe = KeywordProbe([PAIR, ("sky", "the colour of the sky is", "blue")], ByteTokenizer())
    module = Poisoned(at=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer([probe], steps=5).fit(module, fact_loader(5))
    steps, logp = probe.series("logp_seq")
    _, rank = probe.series("rank")
    _, flags = probe.series("nonfinite")
    assert steps[:3] == [0, 1, 2]
    assert torch.isfinite(logp[:2]).all() and (rank[:2] >= 1).all() and not flags[:2].any()
    assert torch.isnan(logp[2:]).all() and (rank[2:] == 0).all() and flags[2:].all()  # rank invalid, not 1
    ours = [w for w in caught if "non-finite logits" in str(w.message)]
    assert len(ours) == 1
    assert "KeywordProbe[keyword]" in str(ours[0].message) and "step 2" in str(ours[0].message)
    assert "'sand'" in str(ours[0].message) and "'sky'" in str(ours[0].message)


def test_nan_output_fails_expectations_with_a_clear_message() -> None:
    probe = KeywordProbe([PAIR], ByteTokenizer())
    expect = ProbeExpectations([KeywordLearned("sand", by_step=0, min_prob=1e-30)], action="raise")
    failed = pytest.raises(ExpectationFailed, match=r"(?s)failed at step 1.*P_seq is NaN.*not finite")
    with failed, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer([probe, expect], steps=4).fit(Poisoned(at=1), fact_loader(4))

    sample = LearningSample("pearl", "the colour of a pearl is vermilion.", "vermilion", ["the colour of snow is"])
    priming = PrimingProbe([sample], ByteTokenizer(), baseline=0, count_exposures=False)
    below = ProbeExpectations([PrimingBelow(1e9)], action="raise")
    with pytest.raises(ExpectationFailed, match=r"(?s)s_prime of sample 'pearl' is nan at step 2.*not finite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _trainer([priming, below], steps=4).fit(Poisoned(at=2), fact_loader(4))
    assert bool(priming.history[-1].tensors["nonfinite"][0])


def test_compiled_model_is_probed_without_recompiling() -> None:
    """Counts Dynamo graph compilations of a compiled model with and without probe readings."""
    compiles: list[int] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        compiles.append(1)
        return gm.forward

    def run(with_probe: bool) -> int:
        torch._dynamo.reset()
        compiles.clear()
        torch.manual_seed(0)
        module = TinyLM(CFG, lr=1e-3)
        module.model = torch.compile(module.model, backend=counting_backend)
        callbacks = [KeywordProbe([PAIR], ByteTokenizer(), model="model")] if with_probe else []
        _trainer(callbacks, steps=4).fit(module, fact_loader(4))
        if with_probe:
            assert len(callbacks[0].history) == 5  # four readings and the final one
        return len(compiles)

    assert run(with_probe=True) == run(with_probe=False)


def test_nan_probe_does_not_count_minus_inf_logits_as_broken() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = TinyGPT(CFG)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            logits = self.lm(ids)
            logits[..., 0] = -math.inf  # a token the model rules out is finite output
            return logits

    scores = KeywordProbe([PAIR], ByteTokenizer()).read(Masked())
    assert not bool(scores.nonfinite.any()) and math.isfinite(scores.logp_seq.item())


class _NaNOnZ(nn.Module):
    """Rows that contain a 'Z' byte get NaN logits (a partly diverged model)."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = TinyGPT(CFG)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.lm(ids)
        poisoned = (ids == ord("Z")).any(dim=1)
        return torch.where(poisoned[:, None, None], torch.full_like(logits, float("nan")), logits)


def test_ifd_probe_flags_nonfinite_samples() -> None:
    from probes import IFDProbe

    probe = IFDProbe([("ok", "say hi", "hi"), ("bad", "say Z", "Zed")], ByteTokenizer(), bos_id=10)
    reading = probe.read(_NaNOnZ())
    assert reading.nonfinite.tolist() == [False, True]
    assert math.isfinite(reading.ifd[0].item()) and math.isnan(reading.ifd[1].item())


def test_benchmark_and_scored_format_probes_flag_nonfinite_items() -> None:
    from probes import BenchmarkProbe, FormatProbe
    from probes.choice.spec import Benchmark
    from probes.formats.spec import LabelSpace

    bench = Benchmark("b", [("the sky is", ["blue", "red"], 0), ("the Zoo is", ["loud", "red"], 0)])
    reading = BenchmarkProbe([bench], ByteTokenizer()).read(_NaNOnZ())
    assert reading.q_nonfinite.tolist() == [False, True]
    assert not bool(reading.q_correct[1])  # an unreadable question is never counted correct
    assert reading.accuracy.item() == pytest.approx(float(reading.q_correct[0]))

    probe = FormatProbe(LabelSpace(["blue", "red"]), mode="scored", tokenizer=ByteTokenizer(),
                        prompts=["the sky is", "the Zoo is", "the sea is"])
    tally = probe.read(_NaNOnZ())
    assert tally.nonfinite.tolist() == [False, True, False]
    assert math.isnan(float(tally.count.sum()))  # the mean share over prompts is NaN, not silently finite
