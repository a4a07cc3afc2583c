"""examples/refinement_frontier.py in a small setting: what it prints equals what its run logs and its
per-seed study file hold, the SFT sets follow the probe's recorded decisions, and the held-out
measures equal independent recomputations."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy import stats

from probes.demos import THEMES, ByteTokenizer, corpus_loader
from probes.frontier.probe import RefinementProbe
from probes.runlog import open_run

ROOT = Path(__file__).resolve().parents[2]
SEEDS = 2


def _load() -> ModuleType:
    path = ROOT / "examples" / "refinement_frontier.py"
    spec = importlib.util.spec_from_file_location("refinement_frontier_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def ran(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("refinement_frontier")
    import contextlib
    import io

    buf = io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(buf):
            example.main(["--seeds", str(SEEDS), "--steps", "2", "--sft-steps", "2", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return buf.getvalue(), out


def _numbers(line: str) -> list[float]:
    return [float(x) for x in line.replace("[", " ").replace("]", " ").replace(",", " ").split()]


def _interval(values: list[float]) -> list[float]:
    """mean and the 95% t-interval, by scipy's own interval function."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if np.all(v == v[0]):
        return [m, m, m]
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=m, scale=stats.sem(v))
    return [m, float(lo), float(hi)]


def test_step_table_equals_the_run_logs(ran: tuple[str, Path]) -> None:
    text, out = ran
    rows = [line for line in text.splitlines() if re.match(r"^\s+\d+\s+-?\d", line)]
    last = _numbers(rows[-1])
    assert last[0] == 2
    inside = [open_run(out / f"seed{s}").read("inside/accepted")[1][-1].mean() for s in range(SEEDS)]
    outside = [open_run(out / f"seed{s}").read("outside/accepted")[1][-1].mean() for s in range(SEEDS)]
    assert last[1:4] == pytest.approx(_interval(inside), abs=6e-4)
    assert last[7:10] == pytest.approx(_interval(outside), abs=6e-4)
    assert open_run(out / "seed0").describe("inside")["rule"].startswith("accepted = r_ifd_refined < r_ifd_original")


def test_sft_sets_follow_the_recorded_decisions(example: ModuleType, ran: tuple[str, Path]) -> None:
    _, out = ran
    study = json.loads((out / "sft_study.json").read_text())
    select = study["select"]
    assert select == 2
    for s, seed_result in enumerate(study["per_seed"]):
        held, pool = seed_result["held_out"], [tuple(p) for p in seed_result["pool"]]
        assert len(held) == 12 and len(pool) == 16 and not set(held) & {n for n, _ in pool}
        for t in THEMES:
            assert sum(n.startswith(f"{t.name}/") for n in held) == 4
        assert sorted(g for _, g in pool) == ["inside"] * 8 + ["outside"] * 8
        run = open_run(out / f"seed{s}")
        expect = []
        for name, group in pool:
            steps, flags = run.read(f"{group}/accepted")
            names = [x["name"] for x in run.describe(group)["samples"]]
            if flags[list(steps).index(select), names.index(name)]:
                expect.append(name)
        assert seed_result["accepted"] == expect
        assert seed_result["arms"]["accepted"]["n"] == seed_result["arms"]["random"]["n"] == len(expect)
        assert seed_result["arms"]["all"]["n"] == seed_result["arms"]["original"]["n"] == 16
        # the saved student is the model the probe read at the selection step
        student = example.TinyGPT(example.CFG)
        student.load_state_dict(torch.load(out / f"seed{s}" / "student.pt", weights_only=True))
        for group in example.GROUPS:
            probe = RefinementProbe(example.samples(group), ByteTokenizer(), prefix=". ", reverse_template="{answer}. ")
            steps, flags = run.read(f"{group}/accepted")
            assert probe.read(student).accepted.tolist() == flags[list(steps).index(select)].astype(bool).tolist()


def _greedy_alone(model: torch.nn.Module, prompt: str, n: int) -> str:
    tok = ByteTokenizer()
    ids = tok.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())
            out.append(nxt)
            if nxt in b".!?":
                break
    text = tok.decode(out)
    cut = min([text.index(c) for c in ".!?" if c in text], default=len(text))
    return text[:cut]


def _correct_by_words(answer: str, attributes: set[str], attr: str) -> bool:
    words = "".join(c.lower() if c.isalpha() else " " for c in answer).split()
    first = next((w for w in words if w in attributes), None)
    return first == attr


def test_held_out_measures_equal_independent_recomputations(example: ModuleType, ran: tuple[str, Path]) -> None:
    _, out = ran
    study = json.loads((out / "sft_study.json").read_text())
    for s, seed_result in enumerate(study["per_seed"]):
        model = example.TinyGPT(example.CFG)
        model.load_state_dict(torch.load(out / f"seed{s}" / "student.pt", weights_only=True))
        model.eval()
        by_name = {f"{t.name}/{subj}": (t, subj, a) for t in THEMES for subj, a in t.facts.items()}
        prompts, answers, hits = [], [], []
        for name in seed_result["held_out"]:
            t, subj, a = by_name[name]
            prompts.append(f". Q: {t.name} of {subj}? A:")
            answers.append(_greedy_alone(model, prompts[-1], 40))
            hits.append(_correct_by_words(answers[-1], set(t.facts.values()), a))
        known = [_correct_by_words(_greedy_alone(model, f". {t.template.format(subject=subj)}", 40),
                                   set(t.facts.values()), a) for t in THEMES for subj, a in t.facts.items()]
        assert seed_result["knows_select"] == pytest.approx(np.mean(known))
        # the batched greedy decoding gives each prompt's own greedy answer
        assert example.greedy_answers(model, prompts) == answers
        assert seed_result["arms"]["none"]["accuracy"] == pytest.approx(np.mean(hits))
        nll, count = 0.0, 0
        with torch.no_grad():
            for b in corpus_loader(n_windows=64, batch_size=16, block_size=64, seed=10_000 + s):
                logp = torch.log_softmax(model(b["input_ids"]).double(), dim=-1)
                nll -= float(logp.gather(-1, b["labels"][..., None]).sum())
                count += b["labels"].numel()
        assert seed_result["arms"]["none"]["loss"] == pytest.approx(nll / count, rel=1e-9)


def test_answer_scoring_on_hand_cases(example: ModuleType) -> None:
    colour = next(t for t in THEMES if t.name == "colour")
    taste = next(t for t in THEMES if t.name == "taste")
    assert example.answer_correct(" the colour of sand is yellow", colour, "yellow")
    assert example.answer_correct(" Sand Exhibits A Predominantly YELLOW Colour", colour, "yellow")
    assert example.answer_correct(" yellow", colour, "yellow")
    assert not example.answer_correct(" blue yellow", colour, "yellow")  # the first attribute word counts
    assert not example.answer_correct(" yellowish", colour, "yellow")  # whole words only
    assert not example.answer_correct(" the taste of salt is", taste, "salty")  # "salt" is not "salty"
    assert example.answer_correct(" salty", taste, "salty")
    assert not example.answer_correct("", colour, "yellow")


def test_printed_sft_table_equals_the_study_file(ran: tuple[str, Path]) -> None:
    text, out = ran
    study = json.loads((out / "sft_study.json").read_text())["per_seed"]
    lines = text.splitlines()
    for arm in ("none", "original", "all", "random", "accepted"):
        line = next(x for x in lines if re.match(rf"^  {arm}\s+\d", x))
        nums = _numbers(line.split(maxsplit=1)[1])
        acc = [r["arms"][arm]["accuracy"] for r in study]
        loss = [r["arms"][arm]["loss"] for r in study]
        if any(math.isnan(v) for v in acc):
            continue  # an empty accepted set: that seed is left out of the arm's interval
        assert nums[0] == pytest.approx(np.mean([r["arms"][arm]["n"] for r in study]), abs=0.05)
        assert nums[1:4] == pytest.approx(_interval(acc), abs=6e-4)
        assert nums[4:7] == pytest.approx(_interval(loss), abs=6e-4)
