"""BenchmarkSpec validation and BenchmarkProbe against a brute-force per-question loop."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from probes.callbacks import BenchmarkProbe
from probes.choice.spec import Benchmark, BenchmarkSuite, Question
from probes.choice.stages import scores_from_probe
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT, TinyLM, corpus_loader
from tests.analysis._util import brute_force_benchmarks, small_suite
from tests.helpers import WeightSnapshots, fast_trainer


@pytest.mark.parametrize(("confidence", "length_norm"), [("chosen", "none"), ("correct", "none"), ("chosen", "token")])
def test_accuracy_confidence_ece_match_brute_force(tiny_gpt, confidence, length_norm):
    suite = small_suite()
    probe = BenchmarkProbe(suite, ByteTokenizer(), confidence=confidence, length_norm=length_norm)
    got = probe.read(tiny_gpt)
    ref = brute_force_benchmarks(tiny_gpt, suite, length_norm=length_norm)
    q = 0
    for b, bench in enumerate(suite):
        r = ref[bench.name]
        assert got.accuracy[b].item() == pytest.approx(r["accuracy"], abs=1e-6)
        assert got.confidence[b].item() == pytest.approx(r[f"confidence_{confidence}"], rel=1e-4)
        assert got.ece[b].item() == pytest.approx(r["ece"], abs=1e-4)
        n = len(bench)
        assert got.q_pred[q : q + n].tolist() == r["pred"]
        assert got.q_correct[q : q + n].tolist() == r["correct"]
        assert got.q_p_chosen[q : q + n].tolist() == pytest.approx(r["p_chosen"], rel=1e-4)
        assert got.q_p_correct[q : q + n].tolist() == pytest.approx(r["p_correct"], rel=1e-4)
        q += n
    # the random model is not at chance on every question, so the comparison is not vacuous
    assert 0 < sum(sum(r["correct"]) for r in ref.values()) < suite.n_questions


def test_one_batched_pass(tiny_gpt):
    probe = BenchmarkProbe(small_suite(), ByteTokenizer())
    calls = []
    handle = tiny_gpt.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    probe.read(tiny_gpt)
    handle.remove()
    assert len(calls) == probe.reader.plan.n_batches == 1
    # single-token letter options share one row per question: fewer rows than options
    assert probe.reader.plan.n_rows < len(probe.items)


def test_readings_in_a_fit_use_the_current_weights():
    suite = small_suite()
    probe = BenchmarkProbe(suite, ByteTokenizer(), model="model", every_n_steps=2, name="bench_pt", stage="pretrain")
    snaps = WeightSnapshots()
    pl.seed_everything(3)
    cfg = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)
    module = TinyLM(cfg)
    trainer = fast_trainer([probe, snaps], max_steps=5, max_epochs=1)
    trainer.fit(module, corpus_loader(n_windows=40, batch_size=8, block_size=32))
    assert [r.step for r in probe.history] == [0, 2, 4, 5]
    assert [bool(r.tensors["end_of_stage"]) for r in probe.history] == [False, False, False, True]
    model = TinyGPT(cfg).eval()
    for record in (probe.history[1], probe.history[-1]):
        model.load_state_dict(snaps.snapshots[record.step])
        ref = brute_force_benchmarks(model, suite)
        for b, bench in enumerate(suite):
            assert record.tensors["accuracy"][b].item() == pytest.approx(ref[bench.name]["accuracy"], abs=1e-6)
            assert record.tensors["confidence"][b].item() == pytest.approx(
                ref[bench.name]["confidence_chosen"], rel=1e-4
            )
    scores = scores_from_probe(probe)
    assert scores.stage == "pretrain" and scores.step == 5
    assert scores.benchmarks == tuple(suite.names) and scores.categories == ("colour", "colour", "taste")
    assert scores.accuracy.tolist() == pytest.approx(probe.history[-1].tensors["accuracy"].tolist())
    state = probe.state_dict()
    assert state == {"version": 1, "last_step": 5, "n_readings": 4, "stage": "pretrain"}
    fresh = BenchmarkProbe(suite, ByteTokenizer(), name="bench_pt", stage="pretrain")
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert probe.describe()["stage"] == "pretrain"
    assert [b["category"] for b in probe.describe()["benchmarks"]] == ["colour", "colour", "taste"]


def test_letters_style_renders_listed_options():
    bench = Benchmark("b", [("the colour of sand is", ["yellow", "blue"], 0)], style="letters")
    ctx, conts = bench.render(bench.questions[0])
    assert ctx == "the colour of sand is\nA. yellow\nB. blue\nAnswer:"
    assert conts == ("A", "B")


def test_bad_benchmarks_get_clear_errors():
    with pytest.raises(ValueError, match=r"Benchmark 'colours', question #1: .*expected at least 2 options, got 1"):
        Benchmark("colours", [("a is", ["x", "y"], 0), ("the colour of sand is", ["yellow"], 0)])
    with pytest.raises(ValueError, match=r"answer.*in \[0, 1\], got 2"):
        Question("the colour of sand is", ["yellow", "blue"], 2)
    with pytest.raises(ValueError, match="'blue' appears twice"):
        Question("the colour of sand is", ["blue", "blue"], 0)
    with pytest.raises(ValueError, match="at least one question"):
        Benchmark("empty", [])
    with pytest.raises(ValueError, match="Duplicate benchmark name 'a'"):
        BenchmarkSuite([Benchmark("a", [("p", ["x", "y"], 0)]), Benchmark("a", [("q", ["x", "y"], 1)])])
    with pytest.raises(ValueError, match="all be text or all be token ids"):
        Question("p", [[1, 2], "y"], 0)
    with pytest.raises(ValueError, match="`confidence` to be 'chosen'"):
        BenchmarkProbe(small_suite(), ByteTokenizer(), confidence="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`length_norm`"):
        BenchmarkProbe(small_suite(), ByteTokenizer(), length_norm="char")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocabulary"):
        BenchmarkProbe(Benchmark("ids", [([1, 2], [[300], [5]], 0)])).reader.bind(TinyGPT())
    torch.manual_seed(0)
