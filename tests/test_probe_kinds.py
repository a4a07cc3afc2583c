"""The probe-kind registry (``probes.core.kinds``): a new probe is one folder.

1. A toy probe kind, declared in this file and nowhere else, gets its ``probes summary`` section,
   dashboard panel and summary line, ``probes plot`` panel, ``probes replay`` line, record schema,
   element labels, a testing assertion and a live expectation; every printed or plotted number is
   checked against the toy's own formula.
2. The BenchmarkProbe and IFDProbe views, on run logs with hand-picked values (and on real
   readings of a tiny model), against hand computations.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from rich.console import Console

from probes.cli.entry import main
from probes.console import Dashboard
from probes.console.numbers import fmt_num, table
from probes.console.panels import panel, panel_table
from probes.console.states import DashboardOptions, NewAlert, SourceState, floats
from probes.core import kinds
from probes.core.kinds import NUMBER, Metric, ProbeKind
from probes.core.probe import Probe
from probes.core.records import Record
from probes.runlog import InvalidRecordError, RunWriter, open_run

# --- helpers --------------------------------------------------------------------------------------


def render(renderable: object, width: int = 100) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO(), legacy_windows=False)
    console.print(renderable)
    return console.export_text()


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def printed(cell: str, x: float, digits: int = 4) -> bool:
    """``cell`` shows ``x`` to ``digits`` significant digits (half a unit of the last digit)."""
    if math.isnan(x):
        return cell == "nan"
    got = float(cell)
    if x == 0:
        return got == 0
    unit = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    return abs(got - x) <= 0.5 * unit * 1.0001


def fields(line: str) -> dict[str, str]:
    """``label value`` pairs of a replay line (fields are separated by two spaces)."""
    return dict(part.rsplit(" ", 1) for part in line.split("  ") if " " in part)


def replay_lines(out: str, source: str) -> dict[int, str]:
    """step -> the rest of the line, for the ``probes replay --plain`` lines of ``source``."""
    found = {}
    for line in out.splitlines():
        m = re.match(rf"step +(\d+)  {re.escape(source)} +(.*)$", line)
        if m:
            found[int(m[1])] = m[2]
    return found


def panel_rows(text: str, first_cells: list[str]) -> dict[str, list[str]]:
    """The cells of the panel rows that start with one of ``first_cells``."""
    rows = {}
    for line in text.splitlines():
        cells = line.strip("│ ").split()
        if cells and cells[0] in first_cells:
            rows[cells[0]] = cells
    return rows


# --- 1. a toy probe kind, declared here and nowhere else -----------------------------------------

ITEMS = ["alpha", "beta", "gamma"]
TOY_STEPS = 5


def toy_scores(step: int) -> np.ndarray:
    """What the toy probe records at ``step``: one score per item."""
    return np.array([0.1 * step, 0.9 - 0.15 * step, 0.5 + 0.01 * step])


class ToyProbe(Probe):
    """A record source emitting one vector metric, ``score`` (one value per item)."""

    kind = "ToyProbe"

    def describe(self) -> Mapping[str, Any]:
        return {**super().describe(), "items": ITEMS}


def _toy_summarize(run: Any, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    _, score = run.read(f"{source}/score")
    names = kinds.get("ToyProbe").labels(describe, "items")
    best = int(np.argmax(score[-1]))
    return {"best": names[best], "best_score": float(score[-1, best]),
            "gain": {n: float(score[-1, i] - score[0, i]) for i, n in enumerate(names)}}


def _toy_lines(section: dict[str, Any]) -> list[str]:
    rows = [[name, gain] for name, gain in section["gain"].items()]
    return [f"  best item {section['best']} at {fmt_num(section['best_score'])}", table(["item", "gain"], rows)]


class ToyState(SourceState):
    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.names = list(describe["items"])
        self.latest: list[float] = []

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.latest = floats(tensors["score"])
        return [NewAlert(f"{self.source}/low", f"{self.source}: a score below 0.1", step, "warning")] if min(
            self.latest
        ) < 0.1 else []


def _toy_panel(state: ToyState, options: DashboardOptions) -> Any:
    t = panel_table()
    t.add_column("item")
    t.add_column("score", justify="right")
    for name, v in zip(state.names, state.latest):
        t.add_row(name, f"{v:.3f}")
    return panel(t, f"{state.source} · toy scores", "white")


def _toy_status(state: ToyState, options: DashboardOptions) -> str:
    best = int(np.argmax(state.latest))
    return f"{state.source}: best {state.names[best]} {state.latest[best]:.3f}"


def _toy_plot(ax: Any, run: Any, source: str, max_series: int) -> None:
    steps, score = run.read(f"{source}/score")
    for i, name in enumerate(kinds.get("ToyProbe").labels(run.describe(source), "items")):
        ax.plot(steps, score[:, i], label=name)
    ax.set_title(f"{source}: toy scores")


def _toy_replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> str:
    return f"mean score {fmt_num(float(t['score'].mean()))}  best {describe['items'][int(np.argmax(t['score']))]}"


def assert_toy_score_above(records: Any, min_score: float, *, source: Optional[str] = None) -> None:
    from probes.testing.collect import collect, pick_source

    data = pick_source(collect(records), "ToyProbe", source)
    final = data.metric("score")[-1]
    for i, v in enumerate(final):
        if not v >= min_score:
            raise AssertionError(f"score of {ITEMS[i]!r} is {fmt_num(v)} < {fmt_num(min_score)}")


@dataclass(frozen=True)
class ToyAbove(kinds.Expectation):
    min_score: float
    kind = "ToyProbe"

    def check(self, data: Any) -> Optional[str]:
        try:
            assert_toy_score_above({data.source: data}, self.min_score)
        except AssertionError as e:
            return str(e)
        return None


TOY = ProbeKind(
    "ToyProbe",
    "toy",
    schema={"score": Metric(NUMBER, ("items",))},
    axes={"items": lambda d: d.get("items")},
    summarize=_toy_summarize,
    summary_lines=_toy_lines,
    state=ToyState,
    panel=_toy_panel,
    status=_toy_status,
    plot=_toy_plot,
    plot_needs=("score",),
    replay=_toy_replay,
    assertions={"assert_toy_score_above": assert_toy_score_above},
    expectations=(ToyAbove,),
)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The toy kind registered, and a run log of the toy probe's records."""
    kinds.register(TOY)
    path = tmp_path_factory.mktemp("toy") / "run"
    probe = ToyProbe("toy")
    with RunWriter(path) as w:
        probe.subscribe(w)
        for step in range(TOY_STEPS):
            probe.emit(step, {"score": torch.tensor(toy_scores(step))})
    yield path
    kinds.unregister("ToyProbe")


def test_the_registry_api() -> None:
    builtin = {"KeywordProbe", "PrimingProbe", "FormatProbe", "BenchmarkProbe", "IFDProbe"}
    assert {k.type_name for k in kinds.kinds()} >= builtin
    assert kinds.get("NoSuchProbe") is kinds.GENERIC and kinds.of({"type": ["odd"]}) is kinds.GENERIC
    assert kinds.of("not a mapping") is kinds.GENERIC and kinds.get("KeywordProbe").key == "keyword"
    with pytest.raises(ValueError, match="already has a kind"):
        kinds.register(ProbeKind("KeywordProbe", "kw2"))
    with pytest.raises(ValueError, match="Key 'keyword' is already used by the kind of 'KeywordProbe'"):
        kinds.register(ProbeKind("OtherProbe", "keyword"))
    with pytest.raises(ValueError, match=r"schema axes \['rows'\] are not declared"):
        ProbeKind("X", "x", schema={"m": Metric(NUMBER, ("rows",))})
    with pytest.raises(ValueError, match="`panel` needs `state`"):
        ProbeKind("X", "x", panel=lambda s, o: None)
    with pytest.raises(ValueError, match="short identifier"):
        ProbeKind("X", "metrics")
    assert kinds.unregister("NotThere") is None


def test_importing_the_registry_and_the_views_stays_light() -> None:
    code = (
        "import sys; from probes.core import kinds; n = len(kinds.kinds());"
        " print(n, 'lightning' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(len(kinds.BUILTIN_PACKAGES)), "False", "False"]


def test_threads_that_look_up_kinds_first_all_see_every_built_in_kind() -> None:
    code = """
import importlib, threading
from probes.core import kinds
seen = []
def look(name):
    seen.append(kinds.get(name).key)
def direct():
    importlib.import_module("probes.ifd.view")
    seen.append(kinds.get("IFDProbe").key)
threads = [threading.Thread(target=look, args=(n,)) for n in ["KeywordProbe", "BenchmarkProbe", "IFDProbe"] * 3]
threads.append(threading.Thread(target=direct))
for t in threads: t.start()
for t in threads: t.join()
print(sorted(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted(["keyword", "benchmark", "ifd"] * 3 + ["ifd"]))


def test_toy_summary(toy_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, final = toy_scores(0), toy_scores(TOY_STEPS - 1)  # [0, .9, .5] and [.4, .3, .54]
    rc, out, _ = cli(capsys, "summary", toy_run, "--json")
    assert rc == 0
    [src] = json.loads(out)["sources"]
    assert src["type"] == "ToyProbe"
    assert src["toy"] == {
        "best": "gamma",
        "best_score": pytest.approx(final[2], abs=0),
        "gain": {n: pytest.approx(final[i] - first[i], rel=1e-12) for i, n in enumerate(ITEMS)},
    }
    [score] = src["metrics"]  # the extremes are labelled with the items the kind's axis names
    assert score["max"] == {"value": 0.9, "step": 0, "element": "beta"}
    assert score["min"] == {"value": 0.0, "step": 0, "element": "alpha"}
    rc, out, _ = cli(capsys, "summary", toy_run)
    assert "  best item gamma at 0.54" in out
    rows = dict(re.findall(r"^  (alpha|beta|gamma)\s+(\S+)$", out, re.M))
    for i, name in enumerate(ITEMS):
        assert printed(rows[name], final[i] - first[i]), (name, rows[name])


def test_toy_dashboard_panel_and_summary_line(toy_run: Path) -> None:
    run = open_run(toy_run)
    d = Dashboard(clock=None)
    d.register_source("toy", run.describe("toy"))
    for r in run.records():
        d.write(r)
    text = render(d, 100)
    assert "toy · toy scores" in text
    rows = panel_rows(text, ITEMS)
    for i, name in enumerate(ITEMS):
        assert rows[name][1] == f"{toy_scores(TOY_STEPS - 1)[i]:.3f}"
    assert d.summary_line().endswith("| toy: best gamma 0.540 | alerts 1")
    assert [a.text for a in d.alerts] == ["toy: a score below 0.1"]  # steps 0 and 1: alpha is 0, 0.1 - eps


def test_toy_plot(toy_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from probes.cli.plot import build_figure

    rc, out, _ = cli(capsys, "plot", toy_run, "-o", tmp_path / "toy.png", "--dpi", "40")
    assert rc == 0 and "(1 panels)" in out and (tmp_path / "toy.png").stat().st_size > 1000
    [ax] = build_figure(open_run(toy_run)).axes
    assert ax.get_title() == "toy: toy scores"
    for i, line in enumerate(ax.get_lines()):
        assert line.get_label() == ITEMS[i]
        np.testing.assert_array_equal(line.get_ydata(), [toy_scores(s)[i] for s in range(TOY_STEPS)])


def test_toy_replay(toy_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "replay", toy_run, "--speed", "0", "--plain")
    assert rc == 0
    lines = replay_lines(out, "toy")
    assert sorted(lines) == list(range(TOY_STEPS))
    for step, line in lines.items():
        scores = toy_scores(step)
        got = fields(line)
        assert printed(got["mean score"], float(scores.mean())), line
        assert got["best"] == ITEMS[int(np.argmax(scores))], line


def test_toy_assertion_and_expectation(toy_run: Path) -> None:
    from probes.testing import assertions as A
    from probes.testing.expectations import ProbeExpectations

    final = toy_scores(TOY_STEPS - 1)  # beta is lowest at 0.3
    assert A.assertion("assert_toy_score_above") is assert_toy_score_above
    A.assert_toy_score_above(toy_run, float(final.min()))
    with pytest.raises(AssertionError, match=r"score of 'beta' is 0.3 < 0.31"):
        A.assert_toy_score_above(toy_run, 0.31)
    with pytest.raises(LookupError, match="No probe kind declares an assertion 'assert_nothing'"):
        A.assertion("assert_nothing")
    from probes.testing.expectations import ToyAbove as Found  # found by class name in the registry

    assert Found is ToyAbove
    run = open_run(toy_run)
    watcher = ProbeExpectations([ToyAbove(0.35)], action="warn")
    watcher.register_source("toy", run.describe("toy"))
    for r in run.records():
        watcher.write(r)
    want = [s for s in range(TOY_STEPS) if toy_scores(s).min() < 0.35]
    assert [f["step"] for f in watcher.failures] == want


def test_toy_schema_and_labels(toy_run: Path, tmp_path: Path) -> None:
    describe = dict(open_run(toy_run).describe("toy"))
    with RunWriter(tmp_path / "bad") as w:
        w.register_source("toy", describe)
        with pytest.raises(InvalidRecordError, match=r"'score' has 2 elements but describe\(\) lists 3 items"):
            w.write(Record(0, "toy", {"score": torch.zeros(2)}))
        with pytest.raises(InvalidRecordError, match=r"'score' has per-record shape \[\], but it is a vector of items"):
            w.write(Record(0, "toy", {"score": torch.tensor(1.0)}))
    from probes.runlog.labels import element_labels, kind_of

    assert kind_of(describe) == "toy"
    assert element_labels(describe, (3,)) == ITEMS and element_labels(describe, (2,)) == ["0", "1"]


def test_without_its_kind_a_type_is_shown_generically(toy_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kinds.unregister("ToyProbe")
    try:
        rc, out, _ = cli(capsys, "summary", toy_run, "--json")
        [src] = json.loads(out)["sources"]
        assert "toy" not in src and src["metrics"][0]["max"]["element"] == "1"  # positional labels
        rc, out, _ = cli(capsys, "replay", toy_run, "--speed", "0", "--plain")
        line = replay_lines(out, "toy")[2]
        assert rc == 0
        assert line.startswith("score mean ") and printed(line.split()[-1], float(toy_scores(2).mean()))
    finally:
        kinds.register(TOY)


# --- 2a. BenchmarkProbe ----------------------------------------------------------------------------

OPTIONS = {  # benchmark -> options per question; the correct option is not needed by the views
    "colours": [["yellow", "blue", "green"], ["black", "white"], ["red", "green", "white", "blue"]],
    "tastes": [["sweet", "sour"], ["bitter", "salty", "sweet"]],
}
BENCH_DESCRIBE = {
    "type": "BenchmarkProbe",
    "source": "bench",
    "stage": "sft",
    "benchmarks": [{"name": b, "n_questions": len(qs)} for b, qs in OPTIONS.items()],
    "questions": [
        {"benchmark": b, "name": f"q{i}", "options": o} for b, qs in OPTIONS.items() for i, o in enumerate(qs)
    ],
    "ablations": [],
}
CORRECT = [  # per step, per question (colours q0..q2, tastes q0..q1)
    [False, False, False, True, False],
    [True, False, False, True, False],
    [True, True, False, True, True],
]
P_CHOSEN = [[0.4, 0.5, 0.3, 0.6, 0.4], [0.5, 0.6, 0.3, 0.7, 0.5], [0.8, 0.7, 0.4, 0.9, 0.6]]
CHANCE = [(1 / 3 + 1 / 2 + 1 / 4) / 3, (1 / 2 + 1 / 3) / 2]  # mean of 1/n_options, by hand
MAJORITY = [1 / 3, 1 / 2]


def bench_by_hand(step: int) -> dict[str, list[float]]:
    """Per benchmark accuracy, confidence and a one-bin ECE |acc - conf|, with explicit loops."""
    out: dict[str, list[float]] = {"accuracy": [], "confidence": [], "ece": []}
    for lo, hi in ((0, 3), (3, 5)):  # colours: questions 0..2, tastes: 3..4
        acc = sum(CORRECT[step][lo:hi]) / (hi - lo)
        conf = sum(P_CHOSEN[step][lo:hi]) / (hi - lo)
        out["accuracy"].append(acc)
        out["confidence"].append(conf)
        out["ece"].append(abs(acc - conf))
    return out


def bench_record(step: int) -> Record:
    h = bench_by_hand(step)
    acc = torch.tensor(h["accuracy"], dtype=torch.float32)
    chance, majority = torch.tensor(CHANCE, dtype=torch.float32), torch.tensor(MAJORITY, dtype=torch.float32)
    return Record(
        step,
        "bench",
        {
            "accuracy": acc,
            "confidence": torch.tensor(h["confidence"], dtype=torch.float32),
            "ece": torch.tensor(h["ece"], dtype=torch.float32),
            "q_pred": torch.zeros(5, dtype=torch.int64),
            "q_correct": torch.tensor(CORRECT[step]),
            "q_p_chosen": torch.tensor(P_CHOSEN[step], dtype=torch.float32),
            "chance": chance,
            "majority": majority,
            "acc_minus_chance": acc - chance,
            "acc_minus_majority": acc - majority,
            "label_mass": torch.tensor([0.01 * (step + 1), 0.02], dtype=torch.float64),
            "end_of_stage": torch.tensor(step == 2),
        },
    )


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "run"
    with RunWriter(path) as w:
        w.register_source("bench", BENCH_DESCRIBE)
        for step in range(3):
            w.write(bench_record(step))
    return path


def test_benchmark_labels_and_chance() -> None:
    from probes.choice.view import chance_levels, question_names

    kind = kinds.get("BenchmarkProbe")
    assert chance_levels(BENCH_DESCRIBE) == pytest.approx(CHANCE, rel=1e-15)
    assert question_names(BENCH_DESCRIBE) == ["colours/q0", "colours/q1", "colours/q2", "tastes/q0", "tastes/q1"]
    assert kind.element_labels(BENCH_DESCRIBE, (2,), "accuracy") == ["colours", "tastes"]
    ablated = {**BENCH_DESCRIBE, "ablations": [{"name": "empty"}]}
    assert kind.element_labels(ablated, (1, 2), "ablation_accuracy") == ["empty,colours", "empty,tastes"]
    # a per-question metric of as many questions as benchmarks is still labelled by question
    two = {**BENCH_DESCRIBE, "questions": BENCH_DESCRIBE["questions"][:2]}
    assert kind.element_labels(two, (2,), "q_correct") == ["colours/q0", "colours/q1"]


def test_benchmark_schema_is_checked(tmp_path: Path) -> None:
    with RunWriter(tmp_path) as w:
        w.register_source("bench", BENCH_DESCRIBE)
        with pytest.raises(InvalidRecordError, match=r"'q_correct' has 4 elements but describe\(\) lists 5 questions"):
            w.write(Record(0, "bench", {"accuracy": torch.zeros(2), "q_correct": torch.zeros(4, dtype=torch.bool)}))
        with pytest.raises(InvalidRecordError, match=r"'accuracy' has 3 elements but describe\(\) lists 2 benchmarks"):
            w.write(Record(0, "bench", {"accuracy": torch.zeros(3)}))


def test_benchmark_summary(bench_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, last = bench_by_hand(0), bench_by_hand(2)
    rc, out, _ = cli(capsys, "summary", bench_run, "--json")
    assert rc == 0
    [src] = json.loads(out)["sources"]
    sec = src["benchmark"]
    f32 = lambda x: float(np.float32(x))  # noqa: E731  # the log holds float32
    assert (sec["stage"], sec["step"], sec["end_of_stage_step"]) == ("sft", 2, 2)
    assert (sec["questions_correct"], sec["n_questions"], sec["wrong"]) == (4, 5, ["colours/q2"])
    for b, row in enumerate(sec["benchmarks"]):
        assert row["benchmark"] == list(OPTIONS)[b] and row["n_questions"] == len(OPTIONS[row["benchmark"]])
        assert row["accuracy_first"] == f32(first["accuracy"][b]) and row["accuracy"] == f32(last["accuracy"][b])
        assert row["chance"] == f32(CHANCE[b]) and row["majority"] == f32(MAJORITY[b])
        assert row["acc_minus_chance"] == pytest.approx(last["accuracy"][b] - CHANCE[b], abs=1e-7)
        assert row["confidence"] == f32(last["confidence"][b]) and row["ece"] == f32(last["ece"][b])
    rc, out, _ = cli(capsys, "summary", bench_run)
    assert "  benchmarks at step 2 (stage sft): 4 of 5 questions correct" in out
    assert "  wrong at step 2: colours/q2" in out and "  end of stage at step 2" in out
    cells = re.split(r"\s{2,}", next(line for line in out.splitlines() if line.startswith("    colours")).strip())
    want = [3, first["accuracy"][0], last["accuracy"][0], CHANCE[0], MAJORITY[0], last["accuracy"][0] - CHANCE[0],
            last["confidence"][0], last["ece"][0]]
    assert cells[1] == "3" and all(printed(c, w) for c, w in zip(cells[2:9], want[1:])), cells


def test_benchmark_panel_and_summary_line(bench_run: Path) -> None:
    run = open_run(bench_run)
    d = Dashboard(clock=None)
    d.register_source("bench", run.describe("bench"))
    for r in run.records():
        d.write(r)
    text = render(d, 100)
    assert "bench · stage sft (end) · 4/5 questions correct" in text
    last = bench_by_hand(2)
    rows = panel_rows(text, list(OPTIONS))
    for b, name in enumerate(OPTIONS):
        acc, conf, ece = last["accuracy"][b], last["confidence"][b], last["ece"][b]
        want = [f"{acc:.3f}", f"{CHANCE[b]:.3f}", f"{acc - CHANCE[b]:+.3f}", f"{conf:.3f}", f"{ece:.3f}"]
        assert rows[name][1:6] == want, rows[name]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert d.summary_line().endswith(
        f" | bench: acc {mean(last['accuracy']):.3f} (chance {mean(CHANCE):.3f}) over 2 benchmarks,"
        f" conf {mean(last['confidence']):.3f}, ECE {mean(last['ece']):.3f}, end of stage"
    )


def test_benchmark_plot(bench_run: Path) -> None:
    pytest.importorskip("matplotlib")
    from probes.cli.plot import build_figure

    [ax] = build_figure(open_run(bench_run)).axes
    assert ax.get_title() == "bench: accuracy per benchmark (dashed: chance)"
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines[::2]] == list(OPTIONS)
    for b in range(2):
        acc, chance = lines[2 * b], lines[2 * b + 1]
        want = np.array([bench_by_hand(s)["accuracy"][b] for s in range(3)], dtype=np.float32)
        np.testing.assert_array_equal(acc.get_ydata(), want.astype(np.float64))
        np.testing.assert_array_equal(chance.get_ydata(), np.full(3, np.float32(CHANCE[b]), dtype=np.float64))
        assert chance.get_linestyle() == "--" and chance.get_color() == acc.get_color()


def test_benchmark_replay(bench_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "replay", bench_run, "--speed", "0", "--plain")
    lines = replay_lines(out, "bench")
    assert rc == 0 and sorted(lines) == [0, 1, 2]
    for step, line in lines.items():
        h = bench_by_hand(step)
        got = fields(line)
        assert printed(got["mean acc"], float(np.mean(h["accuracy"]))), line
        assert printed(got["vs chance"].lstrip("+"), float(np.mean(np.subtract(h["accuracy"], CHANCE)))), line
        assert printed(got["conf"], float(np.mean(h["confidence"]))) and printed(got["ECE"], float(np.mean(h["ece"])))
        assert got["correct"] == f"{sum(CORRECT[step])}/5"
        assert line.endswith("end of stage") == (step == 2)


def test_benchmark_assertions(bench_run: Path) -> None:
    from probes.testing import assertions as A
    from probes.testing.collect import collect

    A.assert_above_chance(bench_run)  # 2/3 > 0.361 and 1 > 0.417 at the last step
    with pytest.raises(AssertionError, match=r"benchmark 'colours' is 0 at step 0, not above chance 0.3611"):
        A.assert_above_chance(bench_run, at_step=0)
    # colours: 2/3 - 0.3611 = 0.3056 is not above a margin of 0.31; tastes: 1 - 0.4167 = 0.5833 is
    with pytest.raises(AssertionError, match=r"'colours' is 0.6667 at step 2, not above chance 0.3611 \+ margin 0.31"):
        A.assert_above_chance(bench_run, margin=0.31)
    A.assert_above_chance(bench_run, "tastes", margin=0.58)
    with pytest.raises(AssertionError, match="'tastes'"):
        A.assert_above_chance(bench_run, ["tastes"], margin=0.59)
    with pytest.raises(ValueError, match=r"Unknown benchmark 'maths'.*\['colours', 'tastes'\]"):
        A.assert_above_chance(bench_run, "maths")
    # ECE at the last step: colours |2/3 - 0.6333| = 0.0333, tastes |1 - 0.75| = 0.25
    A.assert_calibrated(bench_run, 0.25)
    with pytest.raises(AssertionError, match=r"ECE of benchmark 'tastes' is 0.25 at step 2, above the limit 0.2"):
        A.assert_calibrated(bench_run, 0.2)
    A.assert_calibrated(bench_run, 0.04, "colours")
    from probes.testing.expectations import AboveChance

    data = collect(bench_run)["bench"]
    assert AboveChance(by_step=3).check(data) is None  # not due yet
    assert AboveChance(by_step=2).check(data) is None
    message = AboveChance(by_step=2, margin=0.31).check(data)
    assert message is not None and "'colours'" in message


def test_benchmark_views_of_a_real_reading(tiny_gpt: torch.nn.Module, tmp_path: Path, capsys: Any) -> None:
    from probes.choice.probe import BenchmarkProbe
    from probes.choice.spec import Benchmark
    from probes.choice.view import chance_levels
    from probes.demos import ByteTokenizer

    suite = [Benchmark("colours", [("the colour of sand is", list(OPTIONS["colours"][0]), 0),
                                   ("the colour of snow is", list(OPTIONS["colours"][1]), 1)]),
             Benchmark("tastes", [("the taste of salt is", list(OPTIONS["tastes"][1]), 1)])]
    probe = BenchmarkProbe(suite, ByteTokenizer(), name="bench", stage="pretrain")
    reading = probe.read(tiny_gpt)
    with RunWriter(tmp_path) as w:  # the writer checks the record against the kind's schema
        probe.subscribe(w)
        probe.emit(0, {**reading.tensors(), "end_of_stage": torch.tensor(True)})
    describe = open_run(tmp_path).describe("bench")
    assert chance_levels(describe) == pytest.approx([(1 / 3 + 1 / 2) / 2, 1 / 3], rel=1e-15)
    rc, out, _ = cli(capsys, "summary", tmp_path, "--json")
    assert rc == 0
    sec = json.loads(out)["sources"][0]["benchmark"]
    assert [r["accuracy"] for r in sec["benchmarks"]] == reading.accuracy.tolist()
    assert [r["chance"] for r in sec["benchmarks"]] == pytest.approx(chance_levels(describe), rel=1e-6)
    assert sec["questions_correct"] == int(reading.q_correct.sum()) and sec["end_of_stage_step"] == 0


@pytest.mark.parametrize("width", [80, 120, 200])
def test_benchmark_and_ifd_panels_fit_the_console(bench_run: Path, ifd_run: Path, width: int) -> None:
    d = Dashboard(clock=None)
    for path in (bench_run, ifd_run):
        run = open_run(path)
        for source in run.sources():
            d.register_source(source, run.describe(source))
        for r in run.records():
            d.write(r)
    lines = render(d, width).splitlines()
    assert max(len(line) for line in lines) <= width
    side_by_side = any("bench ·" in line and "ifd ·" in line for line in lines)
    assert side_by_side == (width >= 150)  # benchmarks in the main column, IFD at the side


# --- 2b. IFDProbe -----------------------------------------------------------------------------------

SAMPLES = ["s0", "s1", "s2"]
IFD_DESCRIBE = {"type": "IFDProbe", "source": "ifd", "samples": [{"name": n} for n in SAMPLES], "reverse": True}
PPL_COND = [[4.0, 9.0, 2.0], [3.0, 8.0, 1.5]]
PPL_PLAIN = [[5.0, 6.0, 2.0], [5.0, 6.0, 2.0]]
R_IFD = [[0.9, 1.2, 0.7], [0.8, 1.1, 0.5]]


def ifd_by_hand(step: int) -> list[float]:
    return [c / p for c, p in zip(PPL_COND[step], PPL_PLAIN[step])]  # [0.8, 1.5, 1.0], [0.6, 1.333, 0.75]


@pytest.fixture(scope="module")
def ifd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ifd") / "run"
    with RunWriter(path) as w:
        w.register_source("ifd", IFD_DESCRIBE)
        for step in range(2):
            ifd = torch.tensor(ifd_by_hand(step), dtype=torch.float64)
            w.write(Record(step, "ifd", {
                "ifd": ifd,
                "ppl_answer_cond": torch.tensor(PPL_COND[step], dtype=torch.float64),
                "ppl_answer": torch.tensor(PPL_PLAIN[step], dtype=torch.float64),
                "flagged": ifd >= 1.0,
                "frac_flagged": (ifd >= 1.0).double().mean(),
                "r_ifd": torch.tensor(R_IFD[step], dtype=torch.float64),
            }))
    return path


def test_ifd_summary(ifd_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, last = ifd_by_hand(0), ifd_by_hand(1)
    rc, out, _ = cli(capsys, "summary", ifd_run, "--json")
    assert rc == 0
    sec = json.loads(out)["sources"][0]["ifd"]
    assert (sec["step"], sec["n_samples"], sec["flagged"]) == (1, 3, ["s1"])
    assert sec["flagged_share_first"] == pytest.approx(2 / 3) and sec["flagged_share"] == pytest.approx(1 / 3)
    assert sec["median_ifd"] == pytest.approx(0.75)
    assert [r["sample"] for r in sec["samples"]] == ["s1", "s2", "s0"]  # highest final IFD first
    for r in sec["samples"]:
        i = SAMPLES.index(r["sample"])
        assert (r["ifd_first"], r["ifd"], r["r_ifd"]) == pytest.approx((first[i], last[i], R_IFD[1][i]), rel=1e-15)
        assert (r["ppl_answer_cond"], r["ppl_answer"], r["flagged"]) == (PPL_COND[1][i], PPL_PLAIN[1][i], i == 1)
    rc, out, _ = cli(capsys, "summary", ifd_run)
    assert "  flagged samples (IFD >= 1) at step 1: 1 of 3: s1\n" in out
    assert "  median IFD 0.75; flagged share 0.6667 at the first reading, 0.3333 at the last\n" in out
    cells = re.split(r"\s{2,}", next(line for line in out.splitlines() if line.startswith("    s1 ")).strip())
    assert cells[1:] == ["1.5", "1.333", "8", "6", "1.1", "yes"]


def test_ifd_panel_and_summary_line(ifd_run: Path) -> None:
    run = open_run(ifd_run)
    d = Dashboard(clock=None, max_rows=2)
    d.register_source("ifd", run.describe("ifd"))
    for r in run.records():
        d.write(r)
    text = render(d, 100)
    assert "ifd · flagged 1 of 3 (IFD ≥ 1)" in text and "+1 more samples" in text
    rows = panel_rows(text, SAMPLES)
    assert list(rows) == ["s1", "s2"]  # the two highest IFDs, highest first
    last = ifd_by_hand(1)
    for name, cells in rows.items():
        i = SAMPLES.index(name)
        want = [f"{last[i]:.3f}", fmt_num(PPL_COND[1][i]), fmt_num(PPL_PLAIN[1][i]), f"{R_IFD[1][i]:.3f}"]
        assert cells[1:5] == want and cells[5] == ("yes" if last[i] >= 1 else "no"), cells
    assert d.summary_line().endswith("| ifd: 3 samples, 1 flagged (IFD ≥ 1), median IFD 0.750, median r-IFD 0.800")


def test_ifd_plot(ifd_run: Path) -> None:
    pytest.importorskip("matplotlib")
    from probes.cli.plot import build_figure

    [ax] = build_figure(open_run(ifd_run)).axes
    assert ax.get_title() == "ifd: IFD per sample (1 of 3 flagged at the end)" and ax.get_yscale() == "log"
    *curves, threshold = ax.get_lines()
    assert [c.get_label() for c in curves] == SAMPLES
    for i, c in enumerate(curves):
        np.testing.assert_array_equal(c.get_ydata(), [ifd_by_hand(s)[i] for s in range(2)])
    assert list(threshold.get_ydata()) == [1.0, 1.0]


def test_ifd_replay(ifd_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "replay", ifd_run, "--speed", "0", "--plain")
    lines = replay_lines(out, "ifd")
    assert rc == 0 and sorted(lines) == [0, 1]
    for step, line in lines.items():
        ifd = ifd_by_hand(step)
        got = fields(line)
        assert printed(got["median IFD"], float(np.median(ifd))) and printed(got["max"], max(ifd)), line
        assert got["flagged"] == f"{sum(v >= 1 for v in ifd)}/3"
        assert printed(got["median r-IFD"], float(np.median(R_IFD[step]))), line


def test_ifd_assertions(ifd_run: Path) -> None:
    from probes.testing import assertions as A
    from probes.testing.collect import collect
    from probes.testing.expectations import FlaggedAtMost, IFDBelow

    with pytest.raises(AssertionError, match=r"IFD of sample 's1' is 1.5 at step 0, not below 1"):
        A.assert_ifd_below(ifd_run)
    A.assert_ifd_below(ifd_run, samples="s0")  # 0.8, 0.6
    A.assert_ifd_below(ifd_run, 1.51)
    with pytest.raises(AssertionError, match=r"'s2' is 1 at step 0"):  # IFD = 1 is flagged, so not below 1
        A.assert_ifd_below(ifd_run, samples=["s0", "s2"])
    A.assert_ifd_below(ifd_run, samples=["s0", "s2"], after_step=0)
    flagged_at_0 = r"2 of 3 samples flagged \(IFD >= 1\) at step 0: share 0.6667 > 0.5 \(s1, s2\)\n"
    with pytest.raises(AssertionError, match=flagged_at_0):
        A.assert_flagged_at_most(ifd_run, 0.5)
    A.assert_flagged_at_most(ifd_run, 0.5, after_step=0)
    A.assert_flagged_at_most(ifd_run, 2 / 3)
    data = collect(ifd_run)["ifd"]
    assert IFDBelow(1.6).check(data) is None and "'s1'" in (IFDBelow().check(data) or "")
    assert FlaggedAtMost(0.7).check(data) is None and FlaggedAtMost(0.3).check(data) is not None


def test_ifd_views_of_a_real_reading(tiny_gpt: torch.nn.Module, tmp_path: Path, capsys: Any) -> None:
    from probes.demos import ByteTokenizer
    from probes.ifd.probe import IFDProbe

    probe = IFDProbe([("s0", "Q: colour of sand?", "A: yellow"), ("s1", "Q: sky?", "A: blue")], ByteTokenizer(),
                     prefix=". ")
    reading = probe.read(tiny_gpt)
    with RunWriter(tmp_path) as w:  # the writer checks the record against the kind's schema
        probe.subscribe(w)
        probe.emit(0, reading.tensors())
    rc, out, _ = cli(capsys, "summary", tmp_path, "--json")
    assert rc == 0
    sec = json.loads(out)["sources"][0]["ifd"]
    by_name = {r["sample"]: r for r in sec["samples"]}
    for i, name in enumerate(["s0", "s1"]):
        r = by_name[name]
        assert r["ifd"] == float(reading.ifd[i]) and r["flagged"] == bool(reading.ifd[i] >= 1)
        assert r["ifd"] == pytest.approx(r["ppl_answer_cond"] / r["ppl_answer"], rel=1e-5)  # the definition
    assert sec["flagged"] == [n for i, n in enumerate(["s0", "s1"]) if reading.ifd[i] >= 1]
