"""PrimingProbe in real Trainer runs: reading schedule, baselines at first exposure, exposures,
state, errors; scores checked against a manual forward pass of saved weights."""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from probes.callbacks import PrimingProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.priming.injection import InjectedLoader
from probes.priming.probe import METRICS
from probes.priming.spec import LearningSample

TOK = ByteTokenizer()
COLOURS = ["the colour of sand is", "the colour of the sky is", "the colour of grass is"]
PEARL = LearningSample("pearl", "the colour of a pearl is vermilion", "vermilion", COLOURS)
PLUM = LearningSample("plum", "the colour of a plum is mauve", "mauve", COLOURS[:2])
SMALL = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64)


class WeightRecorder(pl.Callback):
    """The LM's weights at every on_before_optimizer_step (keyed by global step) and at the end."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.batch_steps: list[int] = []  # global_step seen by on_train_batch_start of each micro-batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.batch_steps.append(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        self.weights.setdefault(trainer.global_step, copy.deepcopy(pl_module.model.state_dict()))

    def on_train_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self.weights.setdefault(trainer.global_step, copy.deepcopy(pl_module.model.state_dict()))


def reference_logp(weights: dict[str, torch.Tensor], context: str, keyword: str, *, first: bool = False) -> float:
    """ln P(" keyword" | context) by a plain forward pass of a fresh model and a Python loop: the
    context as written without its trailing space, the space scored with the keyword."""
    model = TinyLM(SMALL).model
    model.load_state_dict(weights)
    model.eval()
    ids = TOK.encode(context + keyword)
    n = len(TOK.encode(context.rstrip()))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)
    terms = [logp[t - 1, ids[t]].item() for t in range(n, len(ids))]
    return terms[0] if first else sum(terms)


def run(
    probe: PrimingProbe, *, steps: int, start: int, presentations: int, every: int = 1, accumulate: int = 1,
    samples: tuple[LearningSample, ...] = (PEARL,), recorder: Any = None,
) -> InjectedLoader:
    pl.seed_everything(0)
    model = TinyLM(SMALL, lr=3e-3)
    base = corpus_loader(n_windows=(steps + 2) * accumulate * 4, batch_size=4, block_size=40)
    loader = InjectedLoader(base, samples, TOK, presentations=presentations, every=every, start=start)
    callbacks: list[pl.Callback] = [probe] + ([recorder] if recorder is not None else [])
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, accumulate_grad_batches=accumulate,
    )
    trainer.fit(model, loader)
    return loader


def test_records_follow_the_contract_and_one_reading_per_step() -> None:
    probe = PrimingProbe([PEARL, PLUM], TOK, model="model")
    run(probe, steps=6, start=2, presentations=3, samples=(PEARL, PLUM))
    assert [r.step for r in probe.history] == [0, 1, 2, 3, 4, 5, 6]  # one per update + the final reading
    for record in probe.history:
        assert list(record.tensors) == list(METRICS)
        assert {name: t.shape for name, t in record.tensors.items()} == {name: (2,) for name in METRICS}
        assert record.tensors["exposures"].dtype == torch.int64
        assert record.tensors["surprising"].dtype == torch.bool
        assert record.tensors["s_mem"].dtype == torch.float64
    d = probe.describe()
    assert d["type"] == "PrimingProbe" and d["score"] == "seq"
    assert [s["name"] for s in d["samples"]] == ["pearl", "plum"]
    assert d["tokens"]["pearl"]["pattern"] == TOK.encode("the colour of a pearl is vermilion")


def test_baseline_is_the_reading_just_before_the_first_exposure() -> None:
    recorder = WeightRecorder()
    probe = PrimingProbe([PEARL, PLUM], TOK, model="model")
    loader = run(probe, steps=9, start=4, presentations=3, every=2, recorder=recorder)  # PLUM never injected
    assert [e.batch_index for e in loader.events] == [4, 6, 8]
    _, has = probe.series("has_baseline")
    assert has[:, 0].tolist() == [False] * 4 + [True] * 6  # captured at the step-4 reading
    assert not has[:, 1].any()  # never exposed: no baseline
    _, exposures = probe.series("exposures")
    # the record of step t counts the exposures in updates 1..t: minibatch 4 is update 5
    assert exposures[:, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 2, 3]
    assert exposures[:, 1].tolist() == [0] * 10
    # independent reference: a manual forward of the weights saved at on_before_optimizer_step of step 4
    ref = reference_logp(recorder.weights[4], "the colour of a pearl is ", "vermilion")
    last = probe.latest()
    assert math.log(last["p_before"][0]) == pytest.approx(ref, abs=1e-4)
    assert math.isnan(last["p_before"][1])
    ref_now = reference_logp(recorder.weights[9], "the colour of a pearl is ", "vermilion")
    assert math.log10(last["s_mem"][0]) == pytest.approx((ref_now - ref) / math.log(10), abs=1e-4)
    ratios = [
        math.exp(
            reference_logp(recorder.weights[9], p + " ", "vermilion")
            - reference_logp(recorder.weights[4], p + " ", "vermilion")
        )
        for p in COLOURS
    ]
    assert last["s_prime"][0].item() == pytest.approx(sum(ratios) / 3, rel=1e-3)
    first = probe.history[4].tensors
    assert first["s_mem"][0].item() == 1.0 and first["s_prime"][0].item() == 1.0


def test_baseline_with_gradient_accumulation_and_sparse_readings() -> None:
    recorder = WeightRecorder()
    probe = PrimingProbe([PEARL], TOK, model="model", every_n_steps=4)
    run(probe, steps=5, start=5, presentations=2, accumulate=2, recorder=recorder)
    # micro-batches 4 and 5 form update 3, so the exposure in micro-batch 5 is first seen at step 2
    assert recorder.batch_steps[5] == 2
    assert [r.step for r in probe.history] == [0, 2, 4, 5]  # step 2 forced: a baseline was due
    assert probe.history[1].tensors["has_baseline"].item()
    assert not probe.history[0].tensors["has_baseline"].item()
    ref = reference_logp(recorder.weights[2], "the colour of a pearl is ", "vermilion")
    assert math.log(probe.history[1].tensors["p_before"][0]) == pytest.approx(ref, abs=1e-4)
    # micro-batch 6 is in update 4: the step-4 record has seen both presentations
    assert [r.tensors["exposures"].item() for r in probe.history] == [0, 0, 2, 2]


def test_fixed_baseline_step_and_first_token_mode() -> None:
    recorder = WeightRecorder()
    probe = PrimingProbe([PEARL], TOK, model="model", baseline=3, score="first", every_n_steps=2, name="fixed")
    run(probe, steps=5, start=0, presentations=2, recorder=recorder)
    assert [r.step for r in probe.history] == [0, 2, 3, 4, 5]
    assert [bool(r.tensors["has_baseline"]) for r in probe.history] == [False, False, True, True, True]
    ref = reference_logp(recorder.weights[3], "the colour of a pearl is ", "vermilion", first=True)
    assert math.log(probe.latest()["p_before"][0]) == pytest.approx(ref, abs=1e-4)
    now = reference_logp(recorder.weights[5], "the colour of a pearl is ", "vermilion", first=True)
    assert math.log(probe.latest()["p_learn"][0]) == pytest.approx(now, abs=1e-4)
    assert probe.describe()["score_definition"].startswith("probability of the first keyword token")


def test_state_dict_round_trips_through_weights_only_load() -> None:
    probe = PrimingProbe([PEARL, PLUM], TOK, model="model")
    run(probe, steps=4, start=1, presentations=2, samples=(PEARL, PLUM))
    buffer = io.BytesIO()
    torch.save(probe.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = PrimingProbe([PEARL, PLUM], TOK, model="model")
    fresh.load_state_dict(state)
    assert fresh.exposures.tolist() == probe.exposures.tolist() == [2, 2]
    assert torch.equal(fresh._base_learn, probe._base_learn) and torch.equal(fresh._has_baseline, probe._has_baseline)
    other = PrimingProbe([PLUM], TOK, model="model")
    with pytest.raises(ValueError, match="tracks samples"):
        other.load_state_dict(state)
    assert PrimingProbe([PEARL], TOK, name="a").state_key != PrimingProbe([PEARL], TOK, name="b").state_key


def test_error_mid_training_keeps_earlier_records() -> None:
    pl.seed_everything(0)
    batches = list(corpus_loader(n_windows=24, batch_size=4, block_size=40))
    batches[3] = {"ids": batches[3]["input_ids"], "labels": batches[3]["labels"]}  # a malformed batch

    class Batches:  # a plain iterable (Lightning would read a list as several loaders)
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(batches)

        def __len__(self) -> int:
            return len(batches)

    probe = PrimingProbe([PEARL], TOK, model="model")
    trainer = pl.Trainer(
        max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[probe],
    )
    with pytest.raises(ValueError, match="batch has no key 'input_ids'"):
        trainer.fit(TinyLM(SMALL), Batches())
    assert [r.step for r in probe.history] == [0, 1, 2]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="score"):
        PrimingProbe([PEARL], TOK, score="last")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count_exposures=True"):
        PrimingProbe([PEARL], TOK, count_exposures=False)
    with pytest.raises(ValueError, match="baseline"):
        PrimingProbe([PEARL], TOK, baseline=-1)
    with pytest.raises(ValueError, match="threshold"):
        PrimingProbe([PEARL], TOK, threshold=0)
    with pytest.raises(RuntimeError, match="no readings"):
        PrimingProbe([PEARL], TOK).latest()


def test_one_outlandish_fact_twenty_presentations() -> None:
    """Pretrain a small LM for 60 steps on the themed corpus, then replace one row of each of 20
    consecutive minibatches with an outlandish fact.

    Observed (CPU, torch 2.13, one thread, seed 0), at the final reading with exposures = 20:
    p_before = 7.157e-15, s_mem = 604.2, s_prime = 404.6, median prefix ratio = 227.7.
    The bounds below leave room for other BLAS builds while still requiring both effects.
    """
    pl.seed_everything(0)
    model = TinyLM(GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=64), lr=3e-3)
    loader = InjectedLoader(corpus_loader(n_windows=640, batch_size=8, block_size=48), [PEARL], TOK,
                            presentations=20, every=1, start=60)
    probe = PrimingProbe([PEARL], TOK, model="model")
    trainer = pl.Trainer(max_steps=80, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[probe])
    trainer.fit(model, loader)
    last = probe.latest()
    s_mem, s_prime, p_before = last["s_mem"].item(), last["s_prime"].item(), last["p_before"].item()
    median = last["median_prime_ratio"].item()
    figures = f"p_before={p_before:.3e} s_mem={s_mem:.4g} s_prime={s_prime:.4g} median_ratio={median:.4g}"
    print(figures)
    assert last["exposures"].item() == 20, figures
    assert bool(last["surprising"]), figures
    assert s_mem > 10, figures
    assert s_prime > 10 and median > 10, figures  # measurable priming into the three other colour contexts


def test_probe_and_exposure_counting_leave_training_bit_identical() -> None:
    def train(with_probe: bool) -> TinyLM:
        pl.seed_everything(0)
        model = TinyLM(SMALL, lr=3e-3)
        loader = InjectedLoader(corpus_loader(n_windows=40, batch_size=4, block_size=40), [PEARL], TOK,
                                presentations=3, start=1)
        callbacks = [PrimingProbe([PEARL, PLUM], TOK, model="model")] if with_probe else []
        pl.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, callbacks=callbacks).fit(model, loader)
        return model

    plain, probed = train(False), train(True)
    assert plain.losses == probed.losses
    for (name, a), (_, b) in zip(plain.state_dict().items(), probed.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_checkpoint_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from probes.callbacks.ignore_topk import IgnoreTopK

    def fit(steps: int, ckpt: Any = None) -> tuple[PrimingProbe, InjectedLoader, TinyLM]:
        pl.seed_everything(0)
        probe = PrimingProbe([PEARL], TOK, model="model")
        model = TinyLM(SMALL)
        loader = InjectedLoader(corpus_loader(n_windows=40, batch_size=4, block_size=40), [PEARL], TOK,
                                presentations=6, every=2, start=1)
        saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=4)
        pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   callbacks=[probe, IgnoreTopK(), saver]).fit(model, loader, ckpt_path=ckpt)
        return probe, loader, model

    fit(4)  # interrupted after 4 of 10 minibatches of the first epoch
    resumed_probe, resumed_loader, resumed = fit(12, tmp_path / "last.ckpt")
    probe, loader, straight = fit(12)
    assert [e.batch_index for e in resumed_loader.events] == [5, 7, 9, 11]  # 1 and 3 were before the checkpoint
    assert resumed_loader.counts == loader.counts == {"pearl": 6}
    assert resumed_probe.exposures.tolist() == probe.exposures.tolist() == [6]
    for (name, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(resumed_probe.latest()["s_mem"], probe.latest()["s_mem"])
