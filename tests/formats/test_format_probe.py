"""FormatProbe in its three modes, against brute-force references."""

from __future__ import annotations

import io
import json
import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from probes.callbacks import FormatProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.demos.rl import ARITHMETIC_FORMATS, ArithmeticTask, pretrain_policy
from probes.formats.collapse import CollapseCriterion, FormatCollapseError, FormatCollapseWarning
from probes.formats.sampling import SamplerConfig, sample_texts
from probes.formats.spec import Format, FormatSpec, LabelSpace

from ._util import ScriptedRollouts, trainer

SPEC = FormatSpec([Format("eq", regex=r"\A=", prefixes=("=",)), Format("ans", regex=r"\Aans:", prefixes=("ans:",))])
NAN = math.nan

SCRIPT = [
    {"completions": ["= 1", "= 2", "ans: 3", "??"], "rewards": torch.tensor([1.0, 0.0, 1.0, 0.0])},
    {"completions": ["= 1", "= 2", "= 3", "ans: 4"], "rewards": [1.0, NAN, 1.0, 0.5], "correct": [1, 0, 1, 0]},
    {"completions": [], "rewards": torch.tensor([])},  # an empty rollout batch
    {"completions": ["xx", "yy"]},  # only unclassified outputs, no rewards
    {"completions": ["= 5"] * 6 + ["ans: 1"], "rewards": torch.ones(7)},
]


def brute_force_record(batch: dict) -> dict:
    """Reference metrics of one rollout batch with plain Python loops."""
    buckets = [0 if t.startswith("=") else 1 if t.startswith("ans:") else 2 for t in batch["completions"]]
    counts = [buckets.count(k) for k in range(3)]
    rewards = [float(r) for r in batch.get("rewards", [])] or [NAN] * len(buckets)
    correct = [float(c) for c in batch.get("correct", [])] or [NAN] * len(buckets)

    def mean(values, k):
        vals = [v for v, b in zip(values, buckets) if b == k and not math.isnan(v)]
        return sum(vals) / len(vals) if vals else NAN

    named = np.array(counts[:2], dtype=float)
    valid = named.sum() > 0
    h = scipy_entropy(named) if valid else NAN
    return {
        "dist": [c / len(buckets) for c in counts] if buckets else [NAN] * 3,
        "entropy_nats": h,
        "entropy_bits": scipy_entropy(named, base=2) if valid else NAN,
        "norm_entropy": h / math.log(2) if valid else NAN,
        "eff_formats": math.exp(h) if valid else NAN,
        "dominant": int(np.argmax(named)) if valid else -1,
        "dominant_share": named.max() / named.sum() if valid else NAN,
        "unclassified": counts[2] / len(buckets) if buckets else NAN,
        "n": len(buckets),
        "mean_reward": [mean(rewards, k) for k in range(3)],
        "accuracy": [mean(correct, k) for k in range(3)],
        "named": named / named.sum() if valid else None,
    }


def assert_matches(record, ref):
    for key, want in ref.items():
        if key == "named":
            continue
        got = record.tensors[key]
        np.testing.assert_allclose(got.double().numpy(), np.array(want, dtype=float), atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("manual", [True, False])
def test_rollout_strings_against_brute_force(manual):
    probe = FormatProbe(SPEC, mode="rollout", collapse=CollapseCriterion(tau=0.8, patience=1))
    with pytest.warns(FormatCollapseWarning, match="step 4"):
        trainer([probe], max_steps=len(SCRIPT)).fit(ScriptedRollouts(SCRIPT, manual=manual))
    assert [r.step for r in probe.history] == list(range(len(SCRIPT)))
    refs = [brute_force_record(b) for b in SCRIPT]
    for record, ref in zip(probe.history, refs):
        assert_matches(record, ref)
    # KL from the first record with classified outputs (record 0), as scipy
    first = refs[0]["named"]
    kl = probe.series("kl_from_first")[1].double().numpy()
    want = [scipy_entropy(r["named"], first) if r["named"] is not None else NAN for r in refs]
    np.testing.assert_allclose(kl, want, atol=1e-6, equal_nan=True)
    # collapse: record 1 (share 3/4 < 0.8) no, records 2 and 3 carry no evidence, record 4 (6/7) yes
    assert probe.series("collapsed")[1].tolist() == [False, False, False, False, True]
    assert probe.collapse_state.first_step == 4 and probe.collapse_state.first_format == 0


def test_record_contract_names_shapes_and_dtypes():
    probe = FormatProbe(SPEC, mode="rollout", collapse=None)
    trainer([probe], max_steps=2).fit(ScriptedRollouts(SCRIPT[:2]))
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in probe.history[0].tensors.items()}
    assert shapes == {
        "dist": ((3,), torch.float32),
        "entropy_nats": ((), torch.float32),
        "entropy_bits": ((), torch.float32),
        "norm_entropy": ((), torch.float32),
        "eff_formats": ((), torch.float32),
        "dominant": ((), torch.int64),
        "dominant_share": ((), torch.float32),
        "kl_from_first": ((), torch.float32),
        "unclassified": ((), torch.float32),
        "n": ((), torch.int64),
        "mean_reward": ((3,), torch.float32),
        "accuracy": ((3,), torch.float32),
        "collapsed": ((), torch.bool),
    }
    info = json.loads(json.dumps(probe.describe()))
    assert info["type"] == "FormatProbe" and info["formats"] == ["eq", "ans"] and info["other"] == "other"


def test_rollout_token_ids_equal_strings():
    tok = ByteTokenizer()
    texts = ["= 1", "ans: 22", "= 333", "zz"]
    width = max(len(t) for t in texts)
    padded = torch.tensor([tok.encode(t) + [0] * (width - len(t)) for t in texts])
    as_lists = [tok.encode(t) for t in texts]
    script = [{"completions": texts}, {"completions": padded}, {"completions": as_lists}]
    probe = FormatProbe(SPEC, mode="rollout", tokenizer=tok, pad_id=0, collapse=None)
    trainer([probe], max_steps=3).fit(ScriptedRollouts(script))
    dists = probe.series("dist")[1]
    assert torch.equal(dists[0], dists[1]) and torch.equal(dists[0], dists[2])
    assert dists[0].tolist() == [0.5, 0.25, 0.25]


def test_reward_threshold_gives_accuracy_and_every_n_steps_pools():
    script = [{"completions": ["= 1", "ans: 2"], "rewards": [0.9, 0.2]}, {"completions": ["= 1"], "rewards": [0.1]}]
    probe = FormatProbe(SPEC, mode="rollout", reward_threshold=0.5, every_n_steps=2, collapse=None)
    trainer([probe], max_steps=2).fit(ScriptedRollouts(script))
    (record,) = probe.history
    assert record.step == 1 and int(record.tensors["n"]) == 3
    np.testing.assert_allclose(record.tensors["accuracy"].numpy(), [0.5, 0.0, NAN], equal_nan=True)
    np.testing.assert_allclose(record.tensors["mean_reward"].numpy(), [0.5, 0.2, NAN], atol=1e-6, equal_nan=True)


def test_rollout_errors_name_the_problem():
    probe = FormatProbe(SPEC, mode="rollout")
    with pytest.raises(ValueError, match=r"found no 'completions'.*'loss'"):
        probe.add_rollouts({"loss": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="single string"):
        probe.add_rollouts({"completions": "= 1"})
    with pytest.raises(ValueError, match="pass `tokenizer=`"):
        probe.add_rollouts({"completions": [[61, 32, 49]]})
    with pytest.raises(ValueError, match=r"one value per completion \(2 completions\)"):
        probe.add_rollouts({"completions": ["= 1", "= 2"], "rewards": [1.0]})
    with pytest.raises(ValueError, match="include_other=True"):
        FormatProbe([Format("only", contains="x")])
    with pytest.raises(ValueError, match="mode"):
        FormatProbe(SPEC, mode="live")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs `prompts`"):
        FormatProbe(SPEC, mode="scored", tokenizer=ByteTokenizer())
    with pytest.raises(ValueError, match=r"\['b'\] declare none"):
        FormatProbe(
            [Format("a", contains="a", prefixes=("a",)), Format("b", contains="b")],
            mode="scored",
            prompts=["x"],
            tokenizer=ByteTokenizer(),
        )
    with pytest.raises(ValueError, match="needs `tokenizer=`"):
        FormatProbe(SPEC, mode="sampled", prompts=["1+1 "])


def test_single_format_with_include_other():
    spec = [Format("eq", regex=r"\A=")]
    probe = FormatProbe(spec, mode="rollout", include_other=True, collapse=CollapseCriterion(tau=0.7, patience=1))
    with pytest.warns(FormatCollapseWarning, match="0.750"):
        trainer([probe], max_steps=1).fit(ScriptedRollouts([{"completions": ["= 1", "= 2", "= 3", "x"]}]))
    t = probe.history[0].tensors
    assert float(t["dominant_share"]) == pytest.approx(0.75)
    assert float(t["entropy_nats"]) == pytest.approx(scipy_entropy([3, 1]))
    assert bool(t["collapsed"])


# --- scored mode --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_module():
    class Holder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = pretrain_policy(steps=300)

    return Holder()


def brute_force_prefix_prob(model, prompt: str, prefix: str) -> float:
    """P(prefix | prompt) by chaining one token at a time, one unbatched forward per token."""
    tok = ByteTokenizer()
    ids, logp = tok.encode(prompt), 0.0
    with torch.no_grad():
        for t in tok.encode(prefix):
            logits = model(torch.tensor([ids]))[0, -1].double()
            logp += float(torch.log_softmax(logits, dim=-1)[t])
            ids.append(t)
    return math.exp(logp)


def test_scored_distribution_against_brute_force(policy_module):
    task = ArithmeticTask()
    prompts = task.prompts[::3]
    probe = FormatProbe(ARITHMETIC_FORMATS, mode="scored", prompts=prompts, tokenizer=ByteTokenizer(), model="model")
    got = probe.metrics(probe.read(policy_module))
    rows = []
    for prompt in prompts:
        row = [
            sum(brute_force_prefix_prob(policy_module.model, prompt, x) for x in f.prefixes) for f in ARITHMETIC_FORMATS
        ]
        rows.append([*row, 1.0 - sum(row)])
    want = np.mean(rows, axis=0)
    np.testing.assert_allclose(got["dist"].double().numpy(), want, atol=1e-5)
    named = want[:2] / want[:2].sum()
    assert float(got["entropy_nats"]) == pytest.approx(scipy_entropy(named), abs=1e-5)
    assert float(got["dominant_share"]) == pytest.approx(named.max(), abs=1e-5)
    assert float(got["unclassified"]) == pytest.approx(want[2], abs=1e-5)
    assert int(got["n"]) == 0 and bool(torch.isnan(got["mean_reward"]).all())


def test_label_space_scored_against_brute_force(policy_module):
    labels = LabelSpace(["= 4", "= 5", "ans: 4"], separator="")
    prompts = ["2+2 ", "1+3 ", "4+1 "]
    probe = FormatProbe(labels, mode="scored", prompts=prompts, tokenizer=ByteTokenizer(), model="model")
    got = probe.metrics(probe.read(policy_module))
    rows = []
    for prompt in prompts:
        row = [brute_force_prefix_prob(policy_module.model, prompt, lab) for lab in labels.labels]
        rows.append([*row, 1.0 - sum(row)])
    want = np.mean(rows, axis=0)
    np.testing.assert_allclose(got["dist"].double().numpy(), want, atol=1e-5)
    # entropy over the label set; conformity = mass on the labels = 1 - unclassified
    assert float(got["entropy_nats"]) == pytest.approx(scipy_entropy(want[:3]), abs=1e-5)
    assert 1 - float(got["unclassified"]) == pytest.approx(want[:3].sum(), abs=1e-5)


# --- sampled mode -------------------------------------------------------------------------------


def _tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))


def test_sampled_mode_leaves_the_loss_trajectory_bit_identical():
    loader = lambda: corpus_loader(n_windows=64, batch_size=8, block_size=32)  # noqa: E731
    plain = _tiny_lm()
    pl.seed_everything(0)
    trainer(max_steps=6).fit(plain, loader())
    probed = _tiny_lm()
    probe = FormatProbe(
        [Format("the", regex=r"\A ?the"), Format("space", regex=r"\A ")],
        mode="sampled",
        prompts=["the colour of sand is", "the taste of"],
        tokenizer=ByteTokenizer(),
        model="model",
        n_samples=4,
        sampler=SamplerConfig(max_new_tokens=4, top_p=0.9),
        every_n_steps=2,
        collapse=CollapseCriterion(tau=0.99, patience=5),
    )
    pl.seed_everything(0)
    trainer([probe], max_steps=6).fit(probed, loader())
    assert plain.losses == probed.losses  # exact equality, step by step
    assert [r.step for r in probe.history] == [0, 2, 4, 6]
    assert all(int(r.tensors["n"]) == 8 for r in probe.history)


def test_sampled_mode_equals_direct_sampling_and_generate_fn():
    tok = ByteTokenizer()
    module = _tiny_lm()
    prompts = ["the colour of", "the sound of a"]
    spec = FormatSpec([Format("space", regex=r"\A "), Format("letter", regex=r"\A[a-z]")])
    cfg = SamplerConfig(max_new_tokens=3, seed=5)
    probe = FormatProbe(spec, mode="sampled", prompts=prompts, tokenizer=tok, model="model", n_samples=32, sampler=cfg)
    got = probe.metrics(probe.read(module))
    texts = sample_texts(module.model, prompts, 32, encode=tok.encode, decode=tok.decode, config=cfg)
    flat = [t for per in texts for t in per]
    buckets = [0 if t.startswith(" ") else 1 if t[:1].isalpha() and t[:1].islower() else 2 for t in flat]
    want = [buckets.count(k) / len(flat) for k in range(3)]
    np.testing.assert_allclose(got["dist"].numpy(), want, atol=1e-7)

    calls = []

    def generate_fn(lm, ps):
        calls.append(lm.training)
        return [["  x", "ab"], ["?"]]

    user = FormatProbe(
        spec,
        mode="sampled",
        prompts=prompts,
        model="model",
        generate_fn=generate_fn,
        correct_fn=lambda i, t: i == 0,
        reward_fn=lambda i, t: float(len(t)),
    )
    module.train()
    t = user.metrics(user.read(module))
    assert calls == [False] and module.training  # eval during generation, restored after
    np.testing.assert_allclose(t["dist"].numpy(), [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(t["accuracy"].numpy(), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(t["mean_reward"].numpy(), [3.0, 2.0, 1.0])


# --- actions, rank agreement, state ---------------------------------------------------------------

COLLAPSING = [{"completions": ["= 1"] * 9 + ["ans: 1"]}] * 6


def test_warn_stop_raise():
    crit = CollapseCriterion(tau=0.85, patience=2)
    warn = FormatProbe(SPEC, collapse=crit, on_collapse="warn")
    with pytest.warns(
        FormatCollapseWarning, match=r"step 1: format 'eq' holds a share of 0\.900.*tau=0\.85.*patience=2"
    ):
        trainer([warn], max_steps=6).fit(ScriptedRollouts(COLLAPSING))
    assert len(warn.history) == 6 and warn.collapse_state.first_step == 1

    stop = FormatProbe(SPEC, collapse=crit, on_collapse="stop")
    t = trainer([stop], max_steps=6)
    t.fit(ScriptedRollouts(COLLAPSING))
    assert t.global_step == 2 and len(stop.history) == 2

    boom = FormatProbe(SPEC, collapse=crit, on_collapse="raise")
    with pytest.raises(FormatCollapseError, match="step 1"):
        trainer([boom], max_steps=6).fit(ScriptedRollouts(COLLAPSING))


def test_decision_goes_through_reduce_boolean_decision(monkeypatch):
    probe = FormatProbe(SPEC, collapse=CollapseCriterion(tau=0.85, patience=2), on_collapse="stop")
    t = trainer([probe], max_steps=6)
    calls = []

    def veto(decision, all=True):  # a rank that disagrees: "any" semantics must still see False here
        calls.append(decision)
        return False

    monkeypatch.setattr(t.strategy, "reduce_boolean_decision", veto)
    t.fit(ScriptedRollouts(COLLAPSING))
    assert len(calls) == 2 * 6  # evidence + condition, every record
    assert t.global_step == 6 and not probe.collapse_state.collapsed  # the agreed answer wins


def test_state_dict_resume_with_weights_only():
    crit = CollapseCriterion(tau=0.85, patience=3)
    probe = FormatProbe(SPEC, collapse=crit)
    trainer([probe], max_steps=2).fit(ScriptedRollouts(COLLAPSING[:2]))
    buf = io.BytesIO()
    torch.save({"cb": probe.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["cb"]
    assert state["version"] == 2 and state["collapse"]["streak"] == 2
    resumed = FormatProbe(SPEC, collapse=crit)
    resumed.load_state_dict(state)
    assert resumed.collapse_state == probe.collapse_state
    with pytest.warns(FormatCollapseWarning):  # the third qualifying record completes the streak
        trainer([resumed], max_steps=1).fit(ScriptedRollouts(COLLAPSING[:1]))
    assert resumed.collapse_state.first_step == 0 and resumed.collapse_state.first_streak_start == 0
    assert float(resumed.history[0].tensors["kl_from_first"]) == pytest.approx(0.0, abs=1e-7)


def test_probes_are_picklable_in_every_mode():
    """ddp_spawn pickles callbacks: no closures may hide in a probe."""
    import pickle

    tok = ByteTokenizer()
    probes = [
        FormatProbe(SPEC, mode="rollout", tokenizer=tok),
        FormatProbe(SPEC, mode="sampled", prompts=["1+1 "], tokenizer=tok),
        FormatProbe(SPEC, mode="scored", prompts=["1+1 "], tokenizer=tok),
        FormatProbe(LabelSpace(["yes", "no"]), mode="scored", prompts=["ok?"], tokenizer=tok),
    ]
    for probe in probes:
        clone = pickle.loads(pickle.dumps(probe))
        assert clone.describe() == probe.describe()
    rollout = pickle.loads(pickle.dumps(probes[0]))
    rollout.add_rollouts({"completions": [tok.encode("= 1"), tok.encode("ans: 2")]})
    assert rollout.metrics(rollout._tally)["dist"].tolist() == [0.5, 0.5, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_readings_match_cpu_and_stay_on_device(policy_module):
    """Scored and sampled readings on the GPU equal the CPU ones; record tensors stay on the GPU."""
    task = ArithmeticTask()
    tok = ByteTokenizer()
    scored = FormatProbe(ARITHMETIC_FORMATS, mode="scored", prompts=task.prompts, tokenizer=tok, model="model")
    greedy = SamplerConfig(temperature=0, max_new_tokens=4)
    sampled = FormatProbe(
        ARITHMETIC_FORMATS, mode="sampled", prompts=task.prompts, tokenizer=tok, model="model", sampler=greedy
    )
    cpu = {m.mode: m.metrics(m.read(policy_module)) for m in (scored, sampled)}
    gpu_module = policy_module.to("cuda")
    try:
        gpu = {m.mode: m.metrics(m.read(gpu_module)) for m in (scored, sampled)}
    finally:
        policy_module.to("cpu")
    assert gpu["scored"]["dist"].device.type == "cuda"
    torch.testing.assert_close(gpu["scored"]["dist"].cpu(), cpu["scored"]["dist"], atol=1e-4, rtol=0)
    torch.testing.assert_close(gpu["sampled"]["dist"].cpu(), cpu["sampled"]["dist"], atol=0.05, rtol=0)
    rollout = FormatProbe(ARITHMETIC_FORMATS, mode="rollout")
    rollout.add_rollouts({"completions": ["= 1", "ans: 2"], "rewards": torch.tensor([1.0, 0.0], device="cuda")})
    assert rollout.metrics(rollout._tally)["mean_reward"].device.type == "cuda"


# --- output-space statistics of a LabelSpace (Kung & Peng) ---------------------------------------

LABEL_PROMPTS = ["2+2 ", "1+3 ", "4+1 ", "3+1 "]
LABEL_ANSWERS = ["= 4", "= 4", "= 5", 0]  # a label or its index


def test_label_space_chance_accuracy_and_mass_against_a_loop(policy_module):
    labels = LabelSpace(["= 4", "= 5", "ans: 4"], separator="")
    probe = FormatProbe(
        labels, mode="scored", prompts=LABEL_PROMPTS, answers=LABEL_ANSWERS, tokenizer=ByteTokenizer(), model="model"
    )
    got = probe.metrics(probe.read(policy_module))
    answers = [0, 0, 1, 0]
    rows = [[brute_force_prefix_prob(policy_module.model, p, lab) for lab in labels.labels] for p in LABEL_PROMPTS]
    hits = [int(np.argmax(row)) == a for row, a in zip(rows, answers)]
    accuracy = sum(hits) / len(hits)
    assert 0 < sum(hits)  # the pretrained policy answers some sums: not a vacuous comparison
    assert float(got["label_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    assert float(got["chance"]) == pytest.approx(1 / 3)
    assert float(got["majority"]) == pytest.approx(3 / 4)  # "= 4" is the answer of three prompts of four
    assert float(got["acc_minus_chance"]) == pytest.approx(accuracy - 1 / 3, abs=1e-6)
    assert float(got["acc_minus_majority"]) == pytest.approx(accuracy - 3 / 4, abs=1e-6)
    assert float(got["label_mass"]) == pytest.approx(float(np.mean([sum(r) for r in rows])), abs=1e-5)
    assert float(got["label_mass"]) == pytest.approx(1 - float(got["unclassified"]), abs=1e-6)
    assert probe.describe()["answers"] == ["= 4", "= 4", "= 5", "= 4"]


def test_label_space_agrees_with_benchmark_probe(policy_module):
    from probes.callbacks import BenchmarkProbe
    from probes.choice.spec import Benchmark

    labels = ["= 4", "= 5", "ans: 4"]
    answers = [0, 0, 1, 0]
    fmt = FormatProbe(
        LabelSpace(labels, separator=""),
        mode="scored",
        prompts=LABEL_PROMPTS,
        answers=answers,
        tokenizer=ByteTokenizer(),
        model="model",
    )
    bench = Benchmark("sums", [(p, labels, a) for p, a in zip(LABEL_PROMPTS, answers)], separator="")
    b = BenchmarkProbe(bench, ByteTokenizer(), model="model").read(policy_module)
    got = fmt.metrics(fmt.read(policy_module))
    assert float(got["label_accuracy"]) == pytest.approx(float(b.accuracy[0]), abs=1e-6)
    assert float(got["label_mass"]) == pytest.approx(float(b.label_mass[0]), rel=1e-5)
    assert float(got["chance"]) == pytest.approx(float(b.chance[0]))
    assert float(got["majority"]) == pytest.approx(float(b.majority[0]))


def test_label_space_sampled_accuracy_counts_completions():
    completions = [["positive", "negative", "I think positive"], ["negative!", "meh"]]
    probe = FormatProbe(
        LabelSpace(["positive", "negative"]),
        mode="sampled",
        prompts=["great film:", "awful film:"],
        answers=["positive", "negative"],
        generate_fn=lambda module, prompts: completions,
        collapse=None,
    )
    got = probe.metrics(probe.read(torch.nn.Linear(1, 1)))
    # prompt 0: "positive" right, "negative" wrong, "I think positive" is not a label; prompt 1:
    # "negative!" right, "meh" not a label: 2 of 5 completions answer with the prompt's label
    assert float(got["label_accuracy"]) == pytest.approx(2 / 5)
    assert float(got["label_mass"]) == pytest.approx(3 / 5)
    assert float(got["chance"]) == 0.5 and float(got["majority"]) == 0.5
    assert float(got["acc_minus_majority"]) == pytest.approx(2 / 5 - 1 / 2)


def test_label_space_without_answers_uses_correctness_and_has_no_majority():
    script = [{"completions": ["yes", "no", "maybe"], "correct": [1.0, 0.0, 1.0]}]
    probe = FormatProbe(LabelSpace(["yes", "no"]), mode="rollout", collapse=None)
    trainer([probe], max_steps=1).fit(ScriptedRollouts(script))
    t = probe.history[0].tensors
    assert float(t["label_accuracy"]) == pytest.approx(2 / 3)  # correctness pooled over every completion
    assert math.isnan(float(t["majority"])) and math.isnan(float(t["acc_minus_majority"]))
    assert float(t["label_mass"]) == pytest.approx(2 / 3) and float(t["chance"]) == 0.5
    # scored without answers: nothing to judge against
    scored = FormatProbe(LabelSpace(["yes", "no"]), mode="scored", prompts=["ok?"], tokenizer=ByteTokenizer())
    torch.manual_seed(0)
    got = scored.metrics(scored.read(TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32)).model))
    assert math.isnan(float(got["label_accuracy"])) and math.isnan(float(got["majority"]))
    assert 0 < float(got["label_mass"]) < 1
    # a plain format spec has none of these metrics
    plain = FormatProbe(SPEC, mode="rollout", collapse=None)
    trainer([plain], max_steps=1).fit(ScriptedRollouts(SCRIPT[:1]))
    assert "chance" not in plain.history[0].tensors


def test_answers_errors():
    tok = ByteTokenizer()
    space = LabelSpace(["yes", "no"])
    with pytest.raises(ValueError, match="needs a LabelSpace"):
        FormatProbe(SPEC, mode="scored", prompts=["a"], answers=["eq"], tokenizer=tok)
    with pytest.raises(ValueError, match="sampled and scored modes"):
        FormatProbe(space, mode="rollout", answers=["yes"])
    with pytest.raises(ValueError, match="one label per prompt \\(2 prompts\\)"):
        FormatProbe(space, mode="scored", prompts=["a", "b"], answers=["yes"], tokenizer=tok)
    with pytest.raises(ValueError, match="Answer #1 \\('maybe'\\) is not one of the labels"):
        FormatProbe(space, mode="scored", prompts=["a", "b"], answers=["yes", "maybe"], tokenizer=tok)
