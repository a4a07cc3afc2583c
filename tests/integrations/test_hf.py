"""The Hugging Face Trainer adapter drives the same probes as the plain loop and records the same values.

A real ``transformers.Trainer`` trains a one-layer GPT-2 built from a config (random weights,
nothing downloaded) on byte-tokenized text; the same initial weights, batches, optimizer (AdamW,
constant LR, no weight decay, no clipping) and steps in a hand-written loop under ``ProbeLoop``
give the reference records.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

from probes import (  # noqa: E402
    BenchmarkProbe,
    FormatProbe,
    IFDProbe,
    KeywordProbe,
    LayerUpdateProbe,
    LearningSample,
    PrimingProbe,
    open_run,
)
from probes.choice.spec import Benchmark  # noqa: E402
from probes.demos import ByteTokenizer, make_corpus  # noqa: E402
from probes.formats import Format, FormatSpec  # noqa: E402
from probes.integrations.hf import ProbeTrainerCallback  # noqa: E402
from probes.integrations.loop import ProbeLoop  # noqa: E402
from tests.helpers import fact_pairs  # noqa: E402

STEPS, BATCH, BLOCK, LR = 5, 4, 32, 1e-2
CONTEXTS = ["the colour of the sky is", "the colour of sand is"]


def _probes() -> list[Any]:
    tok = ByteTokenizer()
    fact = LearningSample("coal", "the colour of coal is black", "black", CONTEXTS)
    the, b = Format("the", regex=r"\A the", prefixes=(" the",)), Format("b", regex=r"\A b", prefixes=(" b",))
    bench = Benchmark("colours", [("the colour of sand is", ["yellow", "blue"], 0), ("the sky is", ["blue", "red"], 0)])
    return [
        KeywordProbe(fact_pairs(2), tok, every_n_steps=2),
        PrimingProbe([fact], tok, batch_key="input_ids"),
        FormatProbe(FormatSpec([the, b]), mode="scored", prompts=CONTEXTS, tokenizer=tok, collapse=None),
        BenchmarkProbe(bench, tok, every_n_steps=3),
        IFDProbe([("s", "Q: colour of sand?", "A: yellow")], tok, prefix=". ", every_n_steps=2),
        LayerUpdateProbe(),  # hooks the Trainer's optimizer (accelerate's wrapper unwrapped)
    ]


def _model() -> Any:
    cfg = transformers.GPT2Config(
        vocab_size=256, n_positions=64, n_embd=32, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def _samples(n: int) -> list[dict[str, torch.Tensor]]:
    """Windows of byte-tokenized text; the first label of each is ignored (-100), so every count of
    the loss's tokens (the Trainer counts ``labels`` or ``labels[..., 1:]`` depending on the version)
    is the number of predicted tokens."""
    ids = torch.tensor(ByteTokenizer().encode(make_corpus(200, seed=1)))
    windows = [ids[i * BLOCK:(i + 1) * BLOCK] for i in range(n)]
    return [{"input_ids": w, "labels": torch.cat([torch.tensor([-100]), w[1:]])} for w in windows]


def _hf_run(model: Any, samples: list[Any], path: Any, *, accumulate: int = 1) -> tuple[list[Any], Any]:
    probes = _probes()
    callback = ProbeTrainerCallback(probes, run_log=path)
    args = transformers.TrainingArguments(
        output_dir=str(path.parent / "hf_out"), per_device_train_batch_size=BATCH, max_steps=STEPS,
        gradient_accumulation_steps=accumulate, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=0.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        train_sampling_strategy="sequential", dataloader_num_workers=0, report_to="none", save_strategy="no",
        logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=samples)
    assert callback.install(trainer) is callback  # adds the callback and sends each micro-batch to observe_batch
    trainer.train()
    return probes, callback


def _loop_run(model: Any, samples: list[Any], path: Any, *, accumulate: int = 1) -> list[Any]:
    probes = _probes()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    batches = [transformers.default_data_collator(samples[i:i + BATCH]) for i in range(0, len(samples), BATCH)]
    with ProbeLoop(probes, model, run_log=path) as loop:
        for step in range(STEPS):
            group = batches[step * accumulate:(step + 1) * accumulate]
            tokens = sum(int(b["labels"][..., 1:].ne(-100).sum()) for b in group)
            for batch in group:
                loop.observe_batch(batch)
                model(**batch, num_items_in_batch=torch.tensor(tokens)).loss.backward()  # the Trainer's loss
            loop.optimizer_step(optimizer)
            optimizer.zero_grad()
    return probes


def _assert_same(hf: list[Any], plain: list[Any]) -> None:
    for a, b in zip(hf, plain):
        assert [r.step for r in a.history] == [r.step for r in b.history], a.source
        assert [r.epoch for r in a.history] == [0] * len(a.history)
        for ra, rb in zip(a.history, b.history):
            assert ra.tensors.keys() == rb.tensors.keys()
            for name, value in rb.tensors.items():
                torch.testing.assert_close(
                    ra.tensors[name], value, rtol=1e-6, atol=1e-6, equal_nan=True, msg=f"{a.source}/{name}"
                )


@pytest.mark.parametrize("accumulate", [1, 2])
def test_hf_trainer_records_equal_plain_loop_records(tmp_path, accumulate: int) -> None:
    model = _model()
    start = copy.deepcopy(model.state_dict())
    samples = _samples(BATCH * STEPS * accumulate)
    hf, callback = _hf_run(model, samples, tmp_path / "hf", accumulate=accumulate)
    twin = _model()
    twin.load_state_dict(start)
    plain = _loop_run(twin, samples, tmp_path / "plain", accumulate=accumulate)
    _assert_same(hf, plain)
    assert [r.step for r in hf[0].history] == [0, 2, 4, 5]  # every 2 steps, plus the final reading
    assert [r.step for r in hf[3].history] == [0, 3, 5]
    assert len(hf[5].history) == STEPS  # the update probe saw every optimizer step of the Trainer
    # the batches reached observe_batch: the priming probe counted the sample's exposures
    exposures = hf[1].history[-1].tensors["exposures"]
    texts = [ByteTokenizer().decode(s["input_ids"].tolist()) for s in samples]
    assert int(exposures.sum()) == sum(t.count("the colour of coal is black") for t in texts) > 0
    run = open_run(tmp_path / "hf")
    assert set(run.sources()) == {p.source for p in hf}
    assert run.status == "finished"
    steps, values = run.read("keyword/logp_seq")
    assert list(steps) == [0, 2, 4, 5]
    torch.testing.assert_close(torch.as_tensor(values[-1]), hf[0].history[-1].tensors["logp_seq"], rtol=0, atol=0)
    assert callback.writer is None  # closed at on_train_end


def test_hf_callback_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one probe"):
        ProbeTrainerCallback([])
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="share the name"):
        ProbeTrainerCallback([KeywordProbe(fact_pairs(1), tok), KeywordProbe(fact_pairs(1), tok)])
    with pytest.raises(ValueError, match="console"):
        ProbeTrainerCallback([KeywordProbe(fact_pairs(1), tok)], console="yes")



COMPLETIONS = [[" the a", " b x", " c"], [" b", " b y", " the"], [" c", " c", " b z"], [" the", " the", " b"]]


def _rollout_probe() -> Any:
    the, b = Format("the", regex=r"\A the"), Format("b", regex=r"\A b")
    return FormatProbe(FormatSpec([the, b]), mode="rollout", collapse=None)


def test_rollouts_from_add_outputs_equal_the_plain_loop(tmp_path) -> None:
    """A rollout-mode FormatProbe fed completions through ``add_outputs`` (from ``compute_loss``, as
    an RL trainer would) records what ``ProbeLoop.observe_outputs`` after each step records."""
    probe = _rollout_probe()
    callback = ProbeTrainerCallback([probe])

    class RolloutTrainer(transformers.Trainer):
        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            callback.add_outputs({"completions": COMPLETIONS[self.state.global_step]})
            return super().compute_loss(model, inputs, *args, **kwargs)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, max_steps=4, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True,
    )
    trainer = RolloutTrainer(model=_model(), args=args, train_dataset=_samples(BATCH * 4))
    callback.install(trainer)
    trainer.train()

    plain = _rollout_probe()
    model = _model()
    with ProbeLoop([plain], model) as loop:
        for step in range(4):
            loop.observe_batch(None)
            loop.optimizer_step(torch.optim.SGD(model.parameters(), lr=0.0))
            loop.observe_outputs({"completions": COMPLETIONS[step]})
    assert [r.step for r in probe.history] == [r.step for r in plain.history] and probe.history
    for ra, rb in zip(probe.history, plain.history):
        for name, value in rb.tensors.items():
            torch.testing.assert_close(ra.tensors[name], value, equal_nan=True, msg=name)
    assert int(sum(int(r.tensors["n"]) for r in probe.history)) == sum(len(c) for c in COMPLETIONS)


def test_rollout_reward_dates_rollouts_by_step_with_accumulation_and_skips_evaluation(tmp_path) -> None:
    """A reward function wrapped by ``rollout_reward`` and called as TRL's GRPO calls it (keywords;
    once per optimizer step, in its first micro-batch; again while evaluating) feeds the probe what
    ``ProbeLoop.observe_outputs`` after each step records: strings and conversations alike, a None
    reward as NaN, evaluation completions not counted. (tests/integrations/test_trl_grpo.py runs
    the real GRPOTrainer.)"""
    probe = _rollout_probe()
    callback = ProbeTrainerCallback([probe])

    def text(c: Any) -> str:
        return c if isinstance(c, str) else c[0]["content"]

    def reward(completions: list[Any], **kwargs: Any) -> list[Any]:
        return [None if text(c) == " b" else float(len(text(c))) for c in completions]

    wrapped = callback.rollout_reward(reward)
    assert wrapped.__name__ == "reward" and wrapped(completions=[" c"]) == [2.0]  # before training: not queued
    micro_batches, evaluated = [], []

    class RolloutTrainer(transformers.Trainer):
        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if not model.training:
                evaluated.append(wrapped(prompts=["p"], completions=[" the eval", " b eval"]))
            else:
                micro_batches.append(self.state.global_step)
                if len(micro_batches) % 2 == 1:  # the first micro-batch of each optimizer step generates
                    step = self.state.global_step
                    completions = [[{"role": "assistant", "content": c}] if step % 2 else c for c in COMPLETIONS[step]]
                    wrapped(prompts=["p"] * len(completions), completions=completions, trainer_state=self.state)
            return super().compute_loss(model, inputs, *args, **kwargs)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=4,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True,
        eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=2,
    )
    trainer = RolloutTrainer(model=_model(), args=args, train_dataset=_samples(16), eval_dataset=_samples(2))
    callback.install(trainer)
    trainer.train()
    assert micro_batches == [0, 0, 1, 1, 2, 2, 3, 3] and evaluated  # evaluation called the reward too

    plain = _rollout_probe()
    model = _model()
    with ProbeLoop([plain], model) as loop:
        for step in range(4):
            loop.observe_batch(None)
            loop.optimizer_step(torch.optim.SGD(model.parameters(), lr=0.0))
            rewards = [float("nan") if c == " b" else float(len(c)) for c in COMPLETIONS[step]]
            loop.observe_outputs({"completions": COMPLETIONS[step], "rewards": rewards})
    assert [r.step for r in probe.history] == [r.step for r in plain.history] == [0, 1, 2, 3]
    for ra, rb in zip(probe.history, plain.history):
        for name, value in rb.tensors.items():
            torch.testing.assert_close(ra.tensors[name], value, equal_nan=True, msg=name)
    assert torch.isfinite(probe.history[0].tensors["mean_reward"][:2]).all()


def test_rollout_reward_wraps_async_functions_and_refuses_misuse(tmp_path) -> None:
    import asyncio
    import inspect

    from probes.integrations.hf import _completion_text

    async def judge(completions: list[str], **kwargs: Any) -> list[float]:
        return [1.0 for _ in completions]

    callback = ProbeTrainerCallback([_rollout_probe()])
    wrapped = callback.rollout_reward(judge)
    assert inspect.iscoroutinefunction(wrapped) and wrapped.__name__ == "judge"
    assert asyncio.run(wrapped(completions=["a", "b"])) == [1.0, 1.0]
    with pytest.raises(ValueError, match="wrap only one"):
        callback.rollout_reward(lambda completions, **kw: [0.0] * len(completions))
    with pytest.raises(ValueError, match="callable"):
        ProbeTrainerCallback([_rollout_probe()]).rollout_reward("reward")  # type: ignore[arg-type]
    assert _completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "b"}]) == "ab"
    with pytest.raises(ValueError, match="string content"):
        _completion_text([{"role": "assistant", "content": [{"type": "image"}]}])

    # in training, a completion it cannot classify is skipped with one warning; the reward still returns
    training = ProbeTrainerCallback([_rollout_probe()])
    plain_reward = training.rollout_reward(lambda completions=None, **kw: [2.0])
    training._module = torch.nn.Linear(1, 1)  # what on_train_begin sets: a module in training mode
    image = [[{"role": "assistant", "content": [{"type": "image"}]}]]
    with pytest.warns(RuntimeWarning, match="not recorded .*string content") as caught:
        assert plain_reward(completions=image) == [2.0]
        assert plain_reward(prompts=["p"]) == [2.0]  # no completions: skipped, not warned again
    assert len(caught) == 1 and training._outputs == []

    # outputs are dated by the micro-batch that produced them: without install() they are refused
    late = ProbeTrainerCallback([_rollout_probe()])

    class RolloutTrainer(transformers.Trainer):
        def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            late.add_outputs({"completions": [" the"]})
            return super().compute_loss(model, inputs, *args, **kwargs)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True,
    )
    trainer = RolloutTrainer(model=_model(), args=args, train_dataset=_samples(2), callbacks=[late])
    with pytest.raises(RuntimeError, match=r"install\(trainer\)"):
        trainer.train()


def test_without_install_a_counting_probe_warns_and_the_console_prints_plain_lines(tmp_path, capsys) -> None:
    probes = [KeywordProbe(fact_pairs(1), ByteTokenizer()), PrimingProbe(
        [LearningSample("coal", "the colour of coal is black", "black", CONTEXTS)], ByteTokenizer())]
    callback = ProbeTrainerCallback(probes, console=True)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, max_steps=2, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True,
    )
    trainer = transformers.Trainer(model=_model(), args=args, train_dataset=_samples(8), callbacks=[callback])
    with pytest.warns(UserWarning, match=r"install\(trainer\)"):
        trainer.train()
    assert [r.step for r in probes[0].history] == [0, 1, 2]
    assert "keyword: top" in capsys.readouterr().out  # the plain summary line (stdout is no terminal)


def test_version_auto_and_a_resumed_trainer_continue_the_run_log(tmp_path) -> None:
    """``version="auto"`` numbers runs; a Trainer resumed from its step-2 checkpoint continues the
    newest version as a new timeline: readers see steps 0..4 once, steps >= 2 from the resumed run."""

    def train(resume: bool) -> ProbeTrainerCallback:
        callback = ProbeTrainerCallback([KeywordProbe(fact_pairs(1), ByteTokenizer())], run_log=tmp_path / "runs",
                                        version="auto")
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, max_steps=4, report_to="none",
            save_strategy="steps", save_steps=2, logging_strategy="no", disable_tqdm=True, use_cpu=True,
        )
        trainer = transformers.Trainer(model=_model(), args=args, train_dataset=_samples(16))
        callback.install(trainer)
        trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2") if resume else None)
        return callback

    first = train(resume=False)
    assert first.run_dir == tmp_path / "runs" / "version_0"
    resumed = train(resume=True)
    assert resumed.run_dir == tmp_path / "runs" / "version_0"
    run = open_run(tmp_path / "runs" / "version_0")
    steps, values = run.read("keyword/logp_seq")
    assert list(steps) == [0, 1, 2, 3, 4] and run.status == "finished" and len(run.timelines) == 2
    later = resumed.probes[0].history
    assert [r.step for r in later] == [2, 3, 4]
    torch.testing.assert_close(torch.as_tensor(values[2:]), torch.stack([r.tensors["logp_seq"] for r in later]))
    fresh = train(resume=False)
    assert fresh.run_dir == tmp_path / "runs" / "version_1"
