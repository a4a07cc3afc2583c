"""Output-space statistics of BenchmarkProbe (chance, majority, label mass) and its instruction
ablations, against one-question-at-a-time loops and hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from probes.callbacks import BenchmarkProbe
from probes.choice.calibration import chance_accuracy, label_mass, majority_rate
from probes.choice.spec import Benchmark, BenchmarkSuite
from probes.demos import ByteTokenizer
from tests.analysis._util import brute_force_benchmarks, small_suite


def test_pure_functions_against_hand_values():
    logp = torch.tensor(
        [[math.log(0.2), math.log(0.3), 0.0], [math.log(0.5), math.log(0.25), math.log(0.1)]], dtype=torch.float64
    )
    valid = torch.tensor([[True, True, False], [True, True, True]])
    assert label_mass(logp, valid).tolist() == pytest.approx([0.5, 0.85], abs=1e-12)
    assert label_mass(logp, valid).dtype == torch.float64
    assert chance_accuracy(valid).tolist() == pytest.approx([1 / 2, 1 / 3])
    assert majority_rate(["pos", "neg", "pos", "pos"]) == 0.75
    assert majority_rate([(1, 2), (3,), (3,)]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least one label"):
        majority_rate([])


def test_chance_majority_and_label_mass_match_a_loop(tiny_gpt):
    suite = small_suite()
    reading = BenchmarkProbe(suite, ByteTokenizer()).read(tiny_gpt)
    ref = brute_force_benchmarks(tiny_gpt, suite)
    # hand values: colour-cloze has 3, 2, 4 options and three different answers; the letters
    # benchmark answers A then B; taste-cloze answers sweet then salty
    chance = [(1 / 3 + 1 / 2 + 1 / 4) / 3, (1 / 3 + 1 / 2) / 2, (1 / 2 + 1 / 3) / 2]
    majority = [1 / 3, 1 / 2, 1 / 2]
    assert reading.chance.tolist() == pytest.approx(chance, rel=1e-6)
    assert reading.majority.tolist() == pytest.approx(majority, rel=1e-6)
    q = 0
    for b, bench in enumerate(suite):
        r = ref[bench.name]
        assert reading.acc_minus_chance[b].item() == pytest.approx(r["accuracy"] - chance[b], abs=1e-6)
        assert reading.acc_minus_majority[b].item() == pytest.approx(r["accuracy"] - majority[b], abs=1e-6)
        assert reading.label_mass[b].item() == pytest.approx(r["label_mass"], rel=1e-4)
        assert reading.q_label_mass[q : q + len(bench)].tolist() == pytest.approx(r["q_label_mass"], rel=1e-4)
        q += len(bench)
    assert reading.label_mass.dtype == torch.float64
    # an untrained model puts little mass on any option set: the check is not vacuous
    assert all(0 < m < 0.5 for m in reading.q_label_mass.tolist())
    assert reading.ablation_accuracy is None and "ablation_accuracy" not in reading.tensors()


def test_label_mass_ignores_length_norm(tiny_gpt):
    suite = small_suite()
    a = BenchmarkProbe(suite, ByteTokenizer()).read(tiny_gpt)
    b = BenchmarkProbe(suite, ByteTokenizer(), length_norm="token").read(tiny_gpt)
    assert torch.equal(a.q_label_mass, b.q_label_mass)


def test_majority_uses_the_rendered_correct_label():
    reviews = Benchmark(
        "sentiment",
        [
            ("great film", ["positive", "negative"], 0),
            ("dull film", ["positive", "negative"], 1),
            ("lovely film", ["positive", "negative"], 0),
            ("fine film", ["negative", "positive"], 1),  # same label, other position
        ],
    )
    probe = BenchmarkProbe(reviews, ByteTokenizer())
    assert probe.majority == [0.75] and probe.chance == [0.5]
    letters = Benchmark("sentiment-letters", reviews.questions, style="letters")
    # as letters the labels are A, B, A, B: the output space is the letters
    assert BenchmarkProbe(letters, ByteTokenizer()).majority == [0.5]


def _instructed_suite() -> BenchmarkSuite:
    base = small_suite()
    return BenchmarkSuite(
        [
            Benchmark(b.name, b.questions, category=b.category, style=b.style, instruction="Colour? ")
            if b.category == "colour"
            else Benchmark(b.name, b.questions, category=b.category, style=b.style, instruction="Taste: ")
            for b in base
        ]
    )


def test_instruction_ablations_match_a_loop_in_one_pass(tiny_gpt):
    suite = _instructed_suite()
    misleading = {"colour-cloze": "Taste? ", "colour-letters": "Taste? ", "taste-cloze": "Colour: "}
    probe = BenchmarkProbe(suite, ByteTokenizer(), ablations={"empty": "", "misleading": misleading})
    calls = []
    handle = tiny_gpt.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    reading = probe.read(tiny_gpt)
    handle.remove()
    assert len(calls) == probe.reader.plan.n_batches == 1  # one batched pass for every variant
    own = brute_force_benchmarks(tiny_gpt, suite)
    variants = [
        brute_force_benchmarks(tiny_gpt, suite, instructions={b.name: "" for b in suite}),
        brute_force_benchmarks(tiny_gpt, suite, instructions=misleading),
    ]
    assert reading.ablation_accuracy is not None and reading.ablation_q_correct is not None
    assert reading.ablation_accuracy.shape == (2, 3) and reading.ablation_q_correct.shape == (2, suite.n_questions)
    for b, bench in enumerate(suite):
        assert reading.accuracy[b].item() == pytest.approx(own[bench.name]["accuracy"], abs=1e-6)
        assert reading.label_mass[b].item() == pytest.approx(own[bench.name]["label_mass"], rel=1e-4)
        for v, ref in enumerate(variants):
            assert reading.ablation_accuracy[v, b].item() == pytest.approx(ref[bench.name]["accuracy"], abs=1e-6)
            assert reading.ablation_confidence[v, b].item() == pytest.approx(
                ref[bench.name]["confidence_chosen"], rel=1e-4
            )
            assert reading.ablation_label_mass[v, b].item() == pytest.approx(ref[bench.name]["label_mass"], rel=1e-4)
    for v, ref in enumerate(variants):
        assert reading.ablation_q_correct[v].tolist() == [c for bench in suite for c in ref[bench.name]["correct"]]
    # the instruction changes the scores: the variants are not copies of one another
    assert not torch.allclose(reading.ablation_label_mass[0], reading.label_mass)
    assert [a["name"] for a in probe.describe()["ablations"]] == ["empty", "misleading"]
    assert probe.describe()["ablations"][1]["instructions"]["taste-cloze"] == "Colour: "


def test_empty_instruction_ablation_equals_an_uninstructed_probe(tiny_gpt):
    plain = BenchmarkProbe(small_suite(), ByteTokenizer()).read(tiny_gpt)
    ablated = BenchmarkProbe(_instructed_suite(), ByteTokenizer(), ablations={"empty": ""}).read(tiny_gpt)
    assert ablated.ablation_accuracy is not None
    assert torch.equal(ablated.ablation_accuracy[0], plain.accuracy)
    assert torch.allclose(ablated.ablation_label_mass[0], plain.label_mass, rtol=1e-6, atol=0)


def test_instruction_renders_in_front_of_the_prompt():
    bench = Benchmark("b", [("the colour of sand is", ["yellow", "blue"], 0)], style="letters", instruction="Pick.\n")
    assert bench.render(bench.questions[0])[0] == "Pick.\nthe colour of sand is\nA. yellow\nB. blue\nAnswer:"
    assert bench.render(bench.questions[0], "")[0] == "the colour of sand is\nA. yellow\nB. blue\nAnswer:"
    ids = Benchmark("ids", [([1, 2], [[3], [4]], 0)], instruction=[9])
    assert ids.render(ids.questions[0]) == ((9, 1, 2), ((3,), (4,)))
    assert bench.to_json()["instruction"] == "Pick.\n"


def test_ablation_and_instruction_errors():
    suite = small_suite()
    with pytest.raises(ValueError, match=r"Ablation 'm': .*missing \['taste-cloze'\], unknown \['nope'\]"):
        BenchmarkProbe(suite, ByteTokenizer(), ablations={"m": {"colour-cloze": "", "colour-letters": "", "nope": ""}})
    with pytest.raises(ValueError, match="mapping from a variant name"):
        BenchmarkProbe(suite, ByteTokenizer(), ablations=["", "x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string, got ''"):
        BenchmarkProbe(suite, ByteTokenizer(), ablations={"": ""})
    with pytest.raises(ValueError, match="Ablation 'e', benchmark 'colour-cloze': expected the instruction"):
        BenchmarkProbe(suite, ByteTokenizer(), ablations={"e": [1, 2]})
    with pytest.raises(ValueError, match="token ids, so the instruction must be token ids too"):
        Benchmark("ids", [([1, 2], [[3], [4]], 0)], instruction="text")


def test_prefix_options_are_warned_about():
    bench = Benchmark("b", [("the film was", ["good", "goodish"], 0)])
    with pytest.warns(UserWarning, match="option 0 is a prefix of option 1"):
        BenchmarkProbe(bench, ByteTokenizer())


def test_new_metrics_round_trip_through_a_run_log(tmp_path, tiny_gpt):
    from probes.runlog import RunWriter, open_run

    probe = BenchmarkProbe(_instructed_suite(), ByteTokenizer(), name="bench", ablations={"empty": ""})
    writer = RunWriter(tmp_path / "run")
    probe.subscribe(writer)
    reading = probe.read(tiny_gpt)
    probe.emit(0, {**reading.tensors(), "end_of_stage": torch.tensor(True)})
    writer.close()
    run = open_run(tmp_path / "run")
    steps, values = run.read("bench/ablation_accuracy")
    assert list(steps) == [0] and values.shape == (1, 1, 3)
    assert values[0].tolist() == reading.ablation_accuracy.tolist()
    _, mass = run.read("bench/label_mass")
    assert mass[0].tolist() == reading.label_mass.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reading_matches_cpu_and_stays_on_device(tiny_gpt):
    probe = BenchmarkProbe(_instructed_suite(), ByteTokenizer(), ablations={"empty": "", "misleading": "Taste? "})
    cpu = probe.read(tiny_gpt).tensors()
    gpu = probe.read(tiny_gpt.to("cuda")).tensors()
    for name, value in cpu.items():
        assert gpu[name].device.type == "cuda", name
        if value.dtype == torch.bool or not value.is_floating_point():
            assert torch.equal(gpu[name].cpu(), value), name
        else:
            torch.testing.assert_close(gpu[name].cpu(), value, rtol=1e-4, atol=1e-6)
