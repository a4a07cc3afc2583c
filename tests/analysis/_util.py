"""Builders shared by the analysis tests: a small benchmark suite, brute-force references, run logs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from probes.callbacks import BenchmarkProbe
from probes.choice.spec import Benchmark, BenchmarkSuite
from probes.demos import ByteTokenizer
from tests.reference import brute_force_pair


def small_suite() -> BenchmarkSuite:
    colour = Benchmark(
        "colour-cloze",
        [
            ("the colour of sand is", ["yellow", "blue", "green"], 0),
            ("the colour of snow is", ["black", "white"], 1),
            ("the colour of grass is", ["red", "green", "white", "blue"], 1),
        ],
        category="colour",
    )
    colour_qa = Benchmark(
        "colour-letters",
        [("the colour of coal is", ["black", "yellow", "red"], 0), ("the colour of milk is", ["blue", "white"], 1)],
        category="colour",
        style="letters",
    )
    taste = Benchmark(
        "taste-cloze",
        [("the taste of honey is", ["sweet", "sour"], 0), ("the taste of salt is", ["bitter", "salty", "sweet"], 1)],
        category="taste",
    )
    return BenchmarkSuite([colour, colour_qa, taste])


def brute_force_ece(conf: Sequence[float], correct: Sequence[bool], n_bins: int) -> float:
    """ECE with an explicit loop over bins (b/M, (b+1)/M]; 0 goes to the first bin."""
    n = len(conf)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0)]
        if not members:
            continue
        acc = sum(1.0 for i in members if correct[i]) / len(members)
        avg = sum(conf[i] for i in members) / len(members)
        total += len(members) / n * abs(acc - avg)
    return total


def brute_force_benchmarks(
    model,
    suite: BenchmarkSuite,
    *,
    length_norm: str = "none",
    n_bins: int = 10,
    instructions: Mapping[str, str] | None = None,
) -> dict:
    """Per benchmark accuracy / confidences / ECE / label mass, one question and one option at a
    time; ``instructions`` (benchmark name -> text) replaces the benchmarks' own instructions."""
    tok = ByteTokenizer()
    out: dict[str, dict] = {}
    for bench in suite:
        pred, correct, p_chosen, p_correct, mass = [], [], [], [], []
        for q in bench.questions:
            ctx, conts = bench.render(q, None if instructions is None else instructions[bench.name])
            scores = []
            m = 0.0
            for cont in conts:
                kw = tok.encode(bench.separator + cont)  # the separator is scored with the option
                s = brute_force_pair(model, tok.encode(ctx), kw)["logp_seq"]
                m += math.exp(s)
                scores.append(s / len(kw) if length_norm == "token" else s)
            mass.append(m)
            top = max(scores)
            z = sum(math.exp(s - top) for s in scores)
            probs = [math.exp(s - top) / z for s in scores]
            k = scores.index(top)
            pred.append(k)
            correct.append(k == q.answer)
            p_chosen.append(probs[k])
            p_correct.append(probs[q.answer])
        out[bench.name] = {
            "pred": pred,
            "correct": correct,
            "p_chosen": p_chosen,
            "p_correct": p_correct,
            "accuracy": sum(correct) / len(correct),
            "confidence_chosen": sum(p_chosen) / len(p_chosen),
            "confidence_correct": sum(p_correct) / len(p_correct),
            "ece": brute_force_ece(p_chosen, correct, n_bins),
            "q_label_mass": mass,
            "label_mass": sum(mass) / len(mass),
        }
    return out


def write_benchmark_run(
    path: Path,
    suite: BenchmarkSuite,
    stages: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    extra_steps: int = 1,
) -> None:
    """A real run log: one BenchmarkProbe source per stage; ``extra_steps`` readings before the
    end-of-stage one (with other values, so picking the wrong row shows)."""
    from probes.runlog import RunWriter

    writer = RunWriter(path)
    n_q = suite.n_questions
    n_b = len(suite)
    for stage, values in stages.items():
        probe = BenchmarkProbe(suite, ByteTokenizer(), name=f"bench_{stage}", stage=stage)
        probe.subscribe(writer)
        for step in range(extra_steps + 1):
            end = step == extra_steps
            scale = 1.0 if end else 0.5

            def vec(key: str, values: Mapping[str, Sequence[float]] = values, scale: float = scale) -> torch.Tensor:
                return torch.tensor(np.asarray(values[key], dtype=np.float32) * scale)

            probe.emit(
                step * 10,
                {
                    "accuracy": vec("accuracy"),
                    "confidence": vec("confidence"),
                    "ece": vec("ece") if "ece" in values else torch.zeros(n_b),
                    "q_pred": torch.zeros(n_q, dtype=torch.long),
                    "q_correct": torch.zeros(n_q, dtype=torch.bool),
                    "q_p_chosen": torch.full((n_q,), 0.5),
                    "q_p_correct": torch.full((n_q,), 0.5),
                    "end_of_stage": torch.tensor(end),
                },
            )
    writer.close()
