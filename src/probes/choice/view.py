"""What the shared layers show of a BenchmarkProbe source: its probe kind (``probes.core.kinds``).

Per benchmark the probe records accuracy, confidence, expected calibration error (ECE) and the
chance and majority baselines; per question the chosen option and whether it is correct. This
module declares:

* the record schema over three axes: ``benchmarks`` (``describe()["benchmarks"]``), ``questions``
  (``describe()["questions"]``, labelled ``benchmark/question``) and ``ablations``;
* the ``probes summary`` section: per benchmark the first and final accuracy, chance, majority,
  accuracy minus chance, confidence, ECE and label mass, and the questions answered wrong;
* the dashboard panel: one row per benchmark (accuracy, chance, accuracy minus chance, confidence,
  ECE, an accuracy sparkline), the stage and the questions answered correctly in the title;
* the ``probes plot`` panel: accuracy per benchmark over steps, its chance level dashed;
* the ``probes replay`` line: mean accuracy, accuracy minus chance, confidence, ECE over
  benchmarks (unweighted means), questions correct;
* the assertions ``assert_above_chance`` and ``assert_calibrated``, and the expectations
  :class:`AboveChance` and :class:`Calibrated`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from rich.panel import Panel
from rich.text import Text

from probes.console.numbers import MISSING, fmt_num, printable, sample_rows, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table
from probes.console.sparkline import Sparkline
from probes.console.states import DashboardOptions, NewAlert, SourceState, floats, nonfinite_alerts, scalar
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER, Metric
from probes.runlog.summary import json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "AboveChance",
    "BenchmarkPanel",
    "BenchmarkState",
    "Calibrated",
    "assert_above_chance",
    "assert_calibrated",
    "benchmark_names",
    "chance_levels",
    "question_names",
]

TYPE = "BenchmarkProbe"
_PER_BENCHMARK = (
    "accuracy", "confidence", "ece", "chance", "majority", "acc_minus_chance", "acc_minus_majority", "label_mass",
)
_PER_QUESTION = ("q_pred", "q_p_chosen", "q_p_correct", "q_label_mass")
_ABLATION = ("ablation_accuracy", "ablation_confidence", "ablation_label_mass")


# --- labels -------------------------------------------------------------------------------------


def _questions(describe: Mapping[str, Any]) -> Optional[list[str]]:
    questions = describe.get("questions")
    if not isinstance(questions, (list, tuple)):
        return None
    out = []
    for i, q in enumerate(questions):
        if isinstance(q, Mapping) and isinstance(q.get("name"), str):
            bench = q.get("benchmark")
            out.append(f"{bench}/{q['name']}" if isinstance(bench, str) else q["name"])
        else:
            out.append(str(i))
    return out


def benchmark_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Benchmark names of a BenchmarkProbe, in metric order."""
    return KIND.labels(describe, "benchmarks")


def question_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Question labels (``benchmark/question``) of a BenchmarkProbe, in metric order."""
    return KIND.labels(describe, "questions")


def chance_levels(describe: Mapping[str, Any]) -> Optional[list[float]]:
    """Per benchmark the mean over its questions of ``1 / n_options`` (a uniform guess), from
    ``describe()`` alone; None when it does not list the questions' options."""
    names = benchmark_names(describe) or []
    questions = describe.get("questions")
    if not names or not isinstance(questions, (list, tuple)):
        return None
    sums = dict.fromkeys(names, 0.0)
    counts = dict.fromkeys(names, 0)
    for q in questions:
        options = q.get("options") if isinstance(q, Mapping) else None
        bench = q.get("benchmark") if isinstance(q, Mapping) else None
        if not isinstance(options, (list, tuple)) or not options or not isinstance(bench, str) or bench not in sums:
            return None
        sums[bench] += 1.0 / len(options)
        counts[bench] += 1
    return [sums[n] / counts[n] if counts[n] else math.nan for n in names]


# --- dashboard ----------------------------------------------------------------------------------


def _frac(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else MISSING


def _signed(x: float) -> Text:
    if not math.isfinite(x):
        return Text(MISSING)
    return Text(f"{x:+.3f}", style="green" if x > 0 else "red" if x < 0 else "")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


class BenchmarkState(SourceState):
    """Per benchmark the latest accuracy, confidence, ECE and baselines and an accuracy history; per
    question whether the latest reading got it right."""

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.names = benchmark_names(self.describe) or []
        self.questions = question_names(self.describe) or []
        self.stage = str(self.describe.get("stage") or "")
        self.latest: dict[str, list[float]] = {}
        self.accuracy = self.history()
        self.end_of_stage = False

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.latest = {k: floats(v) for k, v in tensors.items() if v.dim() <= 1}
        n = len(self.latest.get("accuracy", []))
        if len(self.names) != n:
            self.names = [*self.names[:n], *(f"benchmark{i}" for i in range(len(self.names), n))]
        self.accuracy.append(step, self.latest.get("accuracy", []))
        self.end_of_stage = scalar(tensors, "end_of_stage") == 1.0
        alerts = []
        for name in ("accuracy", "confidence"):
            alerts += nonfinite_alerts(self.source, name, tensors.get(name), self.names, step)
        broken = [i for i, v in enumerate(self.latest.get("q_nonfinite", [])) if v == 1.0]
        if broken:
            which = ", ".join(self.questions[i] if i < len(self.questions) else f"#{i}" for i in broken[:3])
            more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
            text = f"{self.source}: NaN/inf output on questions ({which}{more}), counted as wrong"
            alerts.append(NewAlert(f"{self.source}/q_nonfinite/nonfinite", text, step))
        return alerts


    def gap(self, i: int) -> float:
        """Accuracy minus chance of benchmark ``i`` (from the record, else computed)."""
        recorded = self.value("acc_minus_chance", i)
        return recorded if math.isfinite(recorded) else self.value("accuracy", i) - self.value("chance", i)

    def trend(self, i: int) -> list[float]:
        """Accuracy history of benchmark ``i``."""
        return self.column(self.accuracy, i)

    def correct(self) -> tuple[int, int]:
        """Questions answered correctly at the latest reading, and questions."""
        flags = self.latest.get("q_correct", [])
        return sum(1 for v in flags if v == 1.0), len(flags)


class BenchmarkPanel(RowsPanel[BenchmarkState]):
    """Accuracy, chance, accuracy minus chance, confidence and ECE per benchmark."""

    def _title(self) -> str:
        s = self.state
        parts = [s.source]
        if s.stage:
            parts.append(f"stage {s.stage}" + (" (end)" if s.end_of_stage else ""))
        right, total = s.correct()
        if total:
            parts.append(f"{right}/{total} questions correct")
        return " · ".join(parts)

    def __rich__(self) -> Panel:
        s = self.state
        n = len(s.names)
        shown = min(n, self.max_rows)
        t = panel_table(caption=f"+{n - shown} more benchmarks" if n > shown else None)
        name_column(t, "benchmark", max_width=32)
        for head in ("acc", "chance", "vs chance", "conf", "ECE"):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for i in range(shown):
            t.add_row(
                name_cell(s.names[i]),
                _frac(s.value("accuracy", i)),
                _frac(s.value("chance", i)),
                _signed(s.gap(i)),
                _frac(s.value("confidence", i)),
                _frac(s.value("ece", i)),
                Sparkline(s.trend(i)),
            )
        return panel(t, self._title(), "cyan")


def _status(s: BenchmarkState, options: DashboardOptions) -> str:
    n = len(s.names)
    acc = _nanmean([s.value("accuracy", i) for i in range(n)])
    chance = _nanmean([s.value("chance", i) for i in range(n)])
    text = f"{s.source}: acc {_frac(acc)} (chance {_frac(chance)}) over {n} benchmarks"
    text += f", conf {_frac(_nanmean([s.value('confidence', i) for i in range(n)]))}"
    text += f", ECE {_frac(_nanmean([s.value('ece', i) for i in range(n)]))}"
    return text + (", end of stage" if s.end_of_stage else "")


# --- probes summary -----------------------------------------------------------------------------


def _read_last(run: RunReader, source: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    have = set(run.metrics(f"{source}/"))
    return {m: run.read(f"{source}/{m}")[1] for m in names if f"{source}/{m}" in have}


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    series = _read_last(run, source, (*_PER_BENCHMARK, "q_correct", "end_of_stage"))
    if "accuracy" not in series:
        return {}
    steps = run.steps(source)
    acc = series["accuracy"]
    names = benchmark_names(describe) or []
    if len(names) != acc.shape[1]:
        names = [str(i) for i in range(acc.shape[1])]
    listed = describe.get("benchmarks")
    listed = listed if isinstance(listed, list) else []
    counts = [b.get("n_questions") if isinstance(b, Mapping) else None for b in listed]
    chance = series["chance"][-1] if "chance" in series else chance_levels(describe)
    rows = []
    for i, name in enumerate(names):
        final = float(acc[-1, i])
        c = float(chance[i]) if chance is not None and i < len(chance) else math.nan
        rows.append(
            {
                "benchmark": name,
                "n_questions": counts[i] if i < len(counts) and isinstance(counts[i], int) else None,
                "accuracy_first": json_number(acc[0, i]),
                "accuracy": json_number(final),
                "chance": json_number(c),
                "majority": json_number(series["majority"][-1, i]) if "majority" in series else None,
                "acc_minus_chance": json_number(final - c),
                "confidence": json_number(series["confidence"][-1, i]) if "confidence" in series else None,
                "ece": json_number(series["ece"][-1, i]) if "ece" in series else None,
                "label_mass": json_number(series["label_mass"][-1, i]) if "label_mass" in series else None,
            }
        )
    out: dict[str, Any] = {
        "stage": str(describe.get("stage") or ""),
        "step": int(steps[-1]),
        "benchmarks": rows[:limit],
        "n_benchmarks": len(rows),
    }
    if "end_of_stage" in series:
        ends = np.nonzero(np.asarray(series["end_of_stage"], dtype=bool).reshape(len(steps)))[0]
        out["end_of_stage_step"] = int(steps[ends[-1]]) if len(ends) else None
    if "q_correct" in series:
        correct = np.asarray(series["q_correct"][-1], dtype=bool)
        labels = question_names(describe) or []
        if len(labels) != len(correct):
            labels = [str(i) for i in range(len(correct))]
        out["questions_correct"] = int(correct.sum())
        out["n_questions"] = len(correct)
        out["wrong"] = [labels[i] for i in np.nonzero(~correct)[0].tolist()][:limit]
    return out


def _summary_lines(bm: dict[str, Any]) -> list[str]:
    stage = f" (stage {bm['stage']})" if bm["stage"] else ""
    head = f"  benchmarks at step {bm['step']}{stage}"
    if "questions_correct" in bm:
        head += f": {bm['questions_correct']} of {bm['n_questions']} questions correct"
    rows = [
        [r["benchmark"], r["n_questions"], r["accuracy_first"], r["accuracy"], r["chance"], r["majority"],
         r["acc_minus_chance"], r["confidence"], r["ece"], r["label_mass"]]
        for r in bm["benchmarks"]
    ]
    headers = ["benchmark", "questions", "acc first", "acc", "chance", "majority", "acc-chance", "conf", "ECE",
               "label mass"]
    lines = ["", head, table(headers, rows, indent="    ")]
    if bm.get("end_of_stage_step") is not None:
        lines.append(f"  end of stage at step {bm['end_of_stage_step']}")
    if bm.get("wrong"):
        lines.append(f"  wrong at step {bm['step']}: {printable(', '.join(bm['wrong']))}")
    return lines


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """Accuracy per benchmark over steps (solid) and its chance level (dashed, same colour)."""
    describe = run.describe(source)
    steps, acc = run.read(f"{source}/accuracy")
    acc = acc.astype(np.float64)
    series = _read_last(run, source, ("chance",))
    chance = series["chance"].astype(np.float64) if "chance" in series else None
    if chance is None and (levels := chance_levels(describe)) is not None and len(levels) == acc.shape[1]:
        chance = np.tile(np.asarray(levels), (len(steps), 1))
    names = [printable(n) for n in benchmark_names(describe) or []]
    if len(names) != acc.shape[1]:
        names = [str(i) for i in range(acc.shape[1])]
    shown = min(acc.shape[1], max_series)
    for j in range(shown):
        (line,) = ax.plot(steps, acc[:, j], label=names[j], linewidth=1.4)
        if chance is not None:
            ax.plot(steps, chance[:, j], linestyle="--", linewidth=0.9, color=line.get_color())
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    more = f", {shown} of {acc.shape[1]} benchmarks" if shown < acc.shape[1] else ""
    dashed = " (dashed: chance)" if chance is not None else ""
    ax.set_title(f"{printable(source)}: accuracy per benchmark{dashed}{more}")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(True, alpha=0.3)


def _mean(a: np.ndarray) -> float:
    a = a.astype(np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "accuracy" not in t:
        return None
    acc = t["accuracy"]
    parts = [f"mean acc {fmt_num(_mean(acc))}"]
    if "chance" in t:
        gap = _mean(acc.astype(np.float64) - t["chance"].astype(np.float64))
        parts.append(f"vs chance {'+' if gap >= 0 else ''}{fmt_num(gap)}")
    for key, label in (("confidence", "conf"), ("ece", "ECE")):
        if key in t:
            parts.append(f"{label} {fmt_num(_mean(t[key]))}")
    if "q_correct" in t:
        parts.append(f"correct {int(t['q_correct'].sum())}/{t['q_correct'].size}")
    if "end_of_stage" in t and bool(t["end_of_stage"]):
        parts.append("end of stage")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


def _data(records: RecordsLike, source: Optional[str]) -> SourceData:
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    return pick_source(collect(records), TYPE, source)


def _columns(data: SourceData, benchmarks: Optional[Union[str, int, Sequence[Union[str, int]]]]) -> list[int]:
    width = data.metric("accuracy").shape[1]
    names = benchmark_names(data.describe) or [str(i) for i in range(width)]
    if benchmarks is None:
        return list(range(width))
    chosen = [benchmarks] if isinstance(benchmarks, (str, int)) else list(benchmarks)
    out = []
    for b in chosen:
        if isinstance(b, int) and not isinstance(b, bool):
            if not 0 <= b < width:
                raise ValueError(f"Benchmark index {b} out of range for source {data.source!r} ({width} benchmarks).")
            out.append(b)
        elif b in names:
            out.append(names.index(b))
        else:
            raise ValueError(f"Unknown benchmark {b!r} in source {data.source!r}; known: {names}.")
    return out


def _row(data: SourceData, at_step: Optional[int]) -> int:
    if at_step is None:
        return len(data.steps) - 1
    hits = np.nonzero(data.steps == at_step)[0]
    if not len(hits):
        raise ValueError(f"No reading at step {at_step}; readings exist at steps {data.steps.tolist()[:20]}.")
    return int(hits[0])


def _chance(data: SourceData) -> np.ndarray:
    if "chance" in data.metrics:
        return data.metrics["chance"].astype(np.float64)
    levels = chance_levels(data.describe)
    if levels is None:
        raise ValueError(
            f"Source {data.source!r} records no `chance` and its describe() lists no options to compute it from."
        )
    return np.tile(np.asarray(levels, dtype=np.float64), (len(data.steps), 1))


def _history(data: SourceData, col: int, focus: int, metrics: Sequence[str]) -> str:
    names = [m for m in metrics if m in data.metrics]
    rows = [
        (int(data.steps[j]), *(data.metrics[m][j, col].astype(np.float64) for m in names))
        for j in sample_rows(len(data.steps), focus)
    ]
    mark = [r[0] for r in rows].index(int(data.steps[focus]))
    return table(["step", *names], rows, mark=mark)


def assert_above_chance(
    records: RecordsLike,
    benchmarks: Optional[Union[str, int, Sequence[Union[str, int]]]] = None,
    *,
    margin: float = 0.0,
    at_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """The accuracy of every chosen benchmark (default all) is more than ``margin`` above its
    chance level (``1 / n_options`` averaged over its questions) at ``at_step`` (default: the last
    reading).

    Raises:
        AssertionError: naming the first benchmark at or below chance + margin, with its
            accuracy, chance, confidence and ECE over the steps around it.
        ValueError: an unknown benchmark or source, or a step with no reading.
    """
    if not (isinstance(margin, (int, float)) and -1.0 <= margin <= 1.0):
        raise ValueError(f"Expected `margin` to be a fraction in [-1, 1], got {margin!r}.")
    data = _data(records, source)
    k = _row(data, at_step)
    accuracy, chance = data.metric("accuracy").astype(np.float64), _chance(data)
    names = benchmark_names(data.describe) or [str(i) for i in range(accuracy.shape[1])]
    for col in _columns(data, benchmarks):
        acc, c = accuracy[k, col], chance[k, col]
        if not acc > c + margin:
            raise AssertionError(
                f"accuracy of benchmark {names[col]!r} is {fmt_num(acc)} at step {int(data.steps[k])}, not above"
                f" chance {fmt_num(c)} + margin {fmt_num(margin)}\n"
                + _history(data, col, k, ("accuracy", "chance", "confidence", "ece"))
            )


def assert_calibrated(
    records: RecordsLike,
    max_ece: float,
    benchmarks: Optional[Union[str, int, Sequence[Union[str, int]]]] = None,
    *,
    at_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """The expected calibration error of every chosen benchmark (default all) is at most
    ``max_ece`` at ``at_step`` (default: the last reading).

    Raises:
        AssertionError: naming the first benchmark over the limit, with its ECE, accuracy and
            confidence over the steps around it.
        ValueError: an unknown benchmark or source, or a step with no reading.
    """
    if not (isinstance(max_ece, (int, float)) and 0.0 <= max_ece <= 1.0):
        raise ValueError(f"Expected `max_ece` in [0, 1], got {max_ece!r}.")
    data = _data(records, source)
    k = _row(data, at_step)
    ece = data.metric("ece").astype(np.float64)
    names = benchmark_names(data.describe) or [str(i) for i in range(ece.shape[1])]
    for col in _columns(data, benchmarks):
        if not ece[k, col] <= max_ece:
            raise AssertionError(
                f"ECE of benchmark {names[col]!r} is {fmt_num(ece[k, col])} at step {int(data.steps[k])}, above"
                f" the limit {fmt_num(max_ece)}\n" + _history(data, col, k, ("ece", "accuracy", "confidence"))
            )


@dataclass(frozen=True)
class AboveChance(kinds.Expectation):
    """From optimizer step ``by_step`` on, every chosen benchmark's accuracy is more than
    ``margin`` above chance."""

    by_step: int = 0
    margin: float = 0.0
    benchmarks: Optional[tuple[Union[str, int], ...]] = None
    kind = TYPE

    @property
    def label(self) -> str:
        return f"AboveChance(by_step={self.by_step}, margin={self.margin})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_above_chance(data, self.benchmarks, margin=self.margin)


@dataclass(frozen=True)
class Calibrated(kinds.Expectation):
    """From optimizer step ``by_step`` on, every chosen benchmark's ECE is at most ``max_ece``."""

    max_ece: float
    by_step: int = 0
    benchmarks: Optional[tuple[Union[str, int], ...]] = None
    kind = TYPE

    @property
    def label(self) -> str:
        return f"Calibrated(max_ece={self.max_ece}, by_step={self.by_step})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_calibrated(data, self.max_ece, self.benchmarks)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "benchmark",
        globals(),
        schema={
            **kinds.metrics(_PER_BENCHMARK, NUMBER, ("benchmarks",)),
            **kinds.metrics(_PER_QUESTION, NUMBER, ("questions",)),
            **kinds.metrics(("q_correct", "q_nonfinite"), FLAG, ("questions",)),
            **kinds.metrics(_ABLATION, NUMBER, ("ablations", "benchmarks")),
            "ablation_q_correct": Metric(FLAG, ("ablations", "questions")),
            "end_of_stage": Metric(FLAG),
        },
        axes={
            "benchmarks": lambda d: d.get("benchmarks"),
            "questions": _questions,
            "ablations": lambda d: d.get("ablations"),
        },
        state=BenchmarkState,
        panel=lambda s, o: BenchmarkPanel(s, max_rows=o.max_rows).__rich__(),
        column="main",
        plot_needs=("accuracy",),
        assertions={"assert_above_chance": assert_above_chance, "assert_calibrated": assert_calibrated},
        expectations=(AboveChance, Calibrated),
    )
)
