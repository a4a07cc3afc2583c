"""Cross-stage and cross-run analysis of benchmark results ("The Magic Correlations",
arXiv 2602.11217): do accuracy and confidence rankings set in pretraining persist after SFT?

The input is, for several runs (e.g. one per data mixture), the per-benchmark accuracy and
confidence at the end of each stage (:class:`BenchmarkScores`, from a
:class:`~probes.choice.probe.BenchmarkProbe`'s history or from a run log). Every
correlation is *across runs*: one point per run. :func:`stage_transfer` reports

* **cross-stage transfer**, for each metric: per benchmark, the correlation across runs of the
  metric at the source stage with the metric at the target stage; and per category two labelled
  statistics: ``level="category_avg"``, the mean over the category's benchmarks of their
  per-benchmark correlations (the statistic behind the paper's category figures), and
  ``level="category"``, the correlation of the category-mean scores (each run's metric averaged
  over the category's benchmarks first);
* **intra-category coherence**, per stage, category and metric: the mean over all pairs of
  benchmarks in the category of their correlation across runs (pairs whose correlation is
  undefined are left out and counted);
* **calibration alignment**, per stage: the correlation of confidence with accuracy across runs,
  per benchmark (one point per run), per category and over all benchmarks (one point per run and
  benchmark, pooled; the bootstrap resamples whole runs);

each with Pearson, Spearman and Kendall coefficients, scipy p-values (for pooled points the
p-value treats points as independent, which they are not: prefer the run-level bootstrap
interval), and a bootstrap interval over runs drawn once per report from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from probes.analysis.correlation import (
    METHODS,
    Correlation,
    _check_boot,
    _check_methods,
    _scipy_point,
    batched_correlation,
    bootstrap_indices,
    correlate_with_indices,
    percentile_interval,
    undefined_reason,
)

__all__ = [
    "LEVEL_LABELS",
    "METRICS",
    "AlignmentRow",
    "BenchmarkScores",
    "CoherenceRow",
    "TransferReport",
    "TransferRow",
    "cross_stage_display_rows",
    "load_run_scores",
    "scores_from_probe",
    "stage_transfer",
]

METRICS: tuple[str, ...] = ("accuracy", "confidence")
MIN_RUNS = 3
# how each cross-stage level is labelled wherever it is shown (``probes compare``, examples)
LEVEL_LABELS: dict[str, str] = {
    "benchmark": "r per benchmark",
    "category_avg": "mean of per-benchmark r (paper)",
    "category": "r of category-mean scores",
}


def _vector(values: object, what: str, n: int, where: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{where}: expected `{what}` to hold {n} values (one per benchmark), got {arr.size}.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{where}: `{what}` has a non-finite value at benchmark index {int(bad[0])}.")
    return arr


@dataclass(frozen=True)
class BenchmarkScores:
    """One run's per-benchmark results at the end of one stage.

    Args:
        benchmarks: benchmark names.
        categories: the category of each benchmark.
        accuracy: ``[n_benchmarks]`` accuracies.
        confidence: ``[n_benchmarks]`` mean confidences.
        ece: ``[n_benchmarks]`` expected calibration errors, optional.
        stage: the stage label.
        step: the step of the reading, when known.
        source: where it came from (a probe name), when known.

    Raises:
        ValueError: lengths that differ from the number of benchmarks, duplicate benchmark
            names, non-finite values.
    """

    benchmarks: tuple[str, ...]
    categories: tuple[str, ...]
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: Optional[np.ndarray] = None
    stage: str = ""
    step: Optional[int] = None
    source: str = ""

    def __post_init__(self) -> None:
        where = f"Scores of stage {self.stage!r}" if self.stage else "Benchmark scores"
        benchmarks = tuple(str(b) for b in self.benchmarks)
        if not benchmarks:
            raise ValueError(f"{where}: expected at least one benchmark, got none.")
        if len(set(benchmarks)) != len(benchmarks):
            dup = next(b for b in benchmarks if benchmarks.count(b) > 1)
            raise ValueError(f"{where}: duplicate benchmark name {dup!r}.")
        categories = tuple(str(c) for c in self.categories)
        if len(categories) != len(benchmarks):
            raise ValueError(
                f"{where}: expected {len(benchmarks)} categories (one per benchmark), got {len(categories)}."
            )
        n = len(benchmarks)
        object.__setattr__(self, "benchmarks", benchmarks)
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "accuracy", _vector(self.accuracy, "accuracy", n, where))
        object.__setattr__(self, "confidence", _vector(self.confidence, "confidence", n, where))
        if self.ece is not None:
            object.__setattr__(self, "ece", _vector(self.ece, "ece", n, where))

    def metric(self, name: str) -> np.ndarray:
        """``accuracy``, ``confidence`` or ``ece`` as a ``[n_benchmarks]`` array."""
        if name not in ("accuracy", "confidence", "ece"):
            raise ValueError(f"Unknown metric {name!r}; expected 'accuracy', 'confidence' or 'ece'.")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"These scores (stage {self.stage!r}) have no {name!r}.")
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "step": self.step,
            "source": self.source,
            "benchmarks": list(self.benchmarks),
            "categories": list(self.categories),
            "accuracy": self.accuracy.tolist(),
            "confidence": self.confidence.tolist(),
            "ece": None if self.ece is None else self.ece.tolist(),
        }


# ----------------------------------------------------------------------------------------- loading


def _pick_row(steps: np.ndarray, end: Optional[np.ndarray]) -> int:
    """The last end-of-stage reading, else the last reading."""
    if end is not None:
        flagged = np.flatnonzero(np.asarray(end).reshape(len(steps), -1)[:, 0].astype(bool))
        if flagged.size:
            return int(flagged[-1])
    return len(steps) - 1


def _scores_from_arrays(
    describe: Mapping[str, Any], steps: np.ndarray, arrays: Mapping[str, np.ndarray], end: Optional[np.ndarray]
) -> BenchmarkScores:
    if len(steps) == 0:
        raise ValueError(f"Probe {describe.get('source', '?')!r} has no readings yet.")
    row = _pick_row(steps, end)
    benches = describe["benchmarks"]
    return BenchmarkScores(
        benchmarks=tuple(b["name"] for b in benches),
        categories=tuple(b.get("category", "") for b in benches),
        accuracy=np.asarray(arrays["accuracy"])[row],
        confidence=np.asarray(arrays["confidence"])[row],
        ece=np.asarray(arrays["ece"])[row] if "ece" in arrays else None,
        stage=str(describe.get("stage") or describe.get("source", "")),
        step=int(steps[row]),
        source=str(describe.get("source", "")),
    )


def scores_from_probe(probe: Any) -> BenchmarkScores:
    """The end-of-stage (else the latest) reading of a BenchmarkProbe, from its ``history``."""
    describe = probe.describe()
    if describe.get("type") != "BenchmarkProbe":
        raise ValueError(f"Expected a BenchmarkProbe, got a probe of type {describe.get('type')!r}.")
    history = list(probe.history)
    steps = np.array([r.step for r in history], dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    end: Optional[np.ndarray] = None
    if history:
        for key in ("accuracy", "confidence", "ece"):
            arrays[key] = np.stack([r.tensors[key].detach().cpu().numpy() for r in history])
        end = np.array([bool(r.tensors["end_of_stage"]) for r in history])
    return _scores_from_arrays(describe, steps, arrays, end)


def load_run_scores(run: Union[str, Path, Any]) -> dict[str, BenchmarkScores]:
    """stage -> :class:`BenchmarkScores` for every BenchmarkProbe source of a run log.

    Args:
        run: a run directory (opened with ``probes.runlog.open_run``), a directory whose
            sub-directories are run directories (e.g. ``mixA/pretrain`` and ``mixA/sft``, merged),
            or an already opened run with ``sources()``, ``describe(source)`` and
            ``read(name) -> (steps, values)``.

    Raises:
        ValueError: no BenchmarkProbe source, two sources for the same stage, or a path that
            holds no run log.
    """
    if isinstance(run, (str, Path)):
        from probes.runlog import open_run  # a sibling layer; imported lazily

        path = Path(run)
        if not path.is_dir():
            raise ValueError(f"Run directory {str(path)!r} does not exist or is not a directory.")
        if not _is_run_dir(path):
            subs = sorted(p for p in path.iterdir() if p.is_dir() and _is_run_dir(p))
            if not subs:
                raise ValueError(
                    f"{str(path)!r} holds no run log (no shard-*.safetensors files, here or one level down)."
                )
            merged: dict[str, BenchmarkScores] = {}
            for sub in subs:
                for stage, scores in _load_opened(open_run(sub), str(sub), allow_empty=True).items():
                    if stage in merged:
                        raise ValueError(
                            f"Stage {stage!r} is recorded in two run logs under {str(path)!r}; give each"
                            " BenchmarkProbe its own `stage=`."
                        )
                    merged[stage] = scores
            if not merged:
                raise ValueError(f"No BenchmarkProbe source in any run log under {str(path)!r}.")
            return merged
        return _load_opened(open_run(path), str(path))
    return _load_opened(run, repr(run))


def _is_run_dir(path: Path) -> bool:
    return any(p.name.startswith("shard-") and p.name.endswith(".safetensors") for p in path.iterdir())


def _load_opened(run: Any, label: str, *, allow_empty: bool = False) -> dict[str, BenchmarkScores]:
    out: dict[str, BenchmarkScores] = {}
    for source in run.sources():
        describe = dict(run.describe(source))
        if describe.get("type") != "BenchmarkProbe":
            continue
        describe.setdefault("source", source)
        arrays: dict[str, np.ndarray] = {}
        steps: np.ndarray = np.zeros(0, dtype=np.int64)
        for metric in ("accuracy", "confidence", "ece"):
            steps, values = run.read(f"{source}/{metric}")
            arrays[metric] = np.asarray(values)
        try:
            _, end = run.read(f"{source}/end_of_stage")
        except (KeyError, ValueError):
            end = None
        scores = _scores_from_arrays(describe, np.asarray(steps), arrays, end)
        if scores.stage in out:
            raise ValueError(
                f"Two BenchmarkProbe sources ({out[scores.stage].source!r} and {source!r}) record stage"
                f" {scores.stage!r}; give each probe its own `stage=`."
            )
        out[scores.stage] = scores
    if not out and not allow_empty:
        raise ValueError(f"No BenchmarkProbe source in run {label}; its sources are {list(run.sources())}.")
    return out


# ----------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class TransferRow:
    """Cross-stage correlation across runs of one benchmark, or one category's statistic.

    ``level``: ``"benchmark"``; ``"category_avg"`` (the mean over the category's benchmarks of
    their per-benchmark correlations, the paper's statistic: ``p_value`` NaN, interval from the
    run bootstrap, ``n_defined[method]`` benchmarks whose correlation is defined); or
    ``"category"`` (the correlation of the category-mean scores). :data:`LEVEL_LABELS` names them.
    """

    level: str
    name: str
    category: str
    metric: str
    correlations: dict[str, Correlation]
    benchmarks: tuple[str, ...] = ()
    n_defined: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LEVEL_LABELS.get(self.level, self.level)

    def to_json(self) -> dict[str, Any]:
        out = {
            "level": self.level,
            "label": self.label,
            "name": self.name,
            "category": self.category,
            "metric": self.metric,
            "correlations": {m: c.to_json() for m, c in self.correlations.items()},
        }
        if self.level != "benchmark":
            out["benchmarks"] = list(self.benchmarks)
        if self.level == "category_avg":
            out["n_defined"] = dict(self.n_defined)
        return out


@dataclass(frozen=True)
class CoherenceRow:
    """Mean pairwise correlation across runs of the benchmarks of one category at one stage.

    ``coherence[method].r`` is the mean over defined pairs; its ``p_value`` is NaN (not defined
    for a mean of correlations) and its interval comes from the run bootstrap.
    """

    stage: str
    category: str
    metric: str
    benchmarks: tuple[str, ...]
    n_pairs: int
    n_pairs_defined: dict[str, int]
    coherence: dict[str, Correlation]

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "category": self.category,
            "metric": self.metric,
            "benchmarks": list(self.benchmarks),
            "n_pairs": self.n_pairs,
            "n_pairs_defined": dict(self.n_pairs_defined),
            "coherence": {m: c.to_json() for m, c in self.coherence.items()},
        }


@dataclass(frozen=True)
class AlignmentRow:
    """Correlation of confidence with accuracy across runs at one stage."""

    stage: str
    level: str  # "all", "category" or "benchmark"
    name: str
    correlations: dict[str, Correlation]

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "level": self.level,
            "name": self.name,
            "correlations": {m: c.to_json() for m, c in self.correlations.items()},
        }


@dataclass(frozen=True)
class TransferReport:
    """Everything :func:`stage_transfer` computes; ``to_json()`` gives a JSON-safe dict."""

    runs: tuple[str, ...]
    source_stage: str
    target_stage: str
    benchmarks: tuple[str, ...]
    categories: tuple[str, ...]
    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    n_boot: int
    ci: float
    seed: int
    cross_stage: list[TransferRow] = field(default_factory=list)
    coherence: list[CoherenceRow] = field(default_factory=list)
    alignment: list[AlignmentRow] = field(default_factory=list)
    scores: dict[str, dict[str, BenchmarkScores]] = field(default_factory=dict)

    def transfer(self, name: str, metric: str = "accuracy", *, level: str = "benchmark") -> TransferRow:
        """The cross-stage row of one benchmark (``level="benchmark"``) or category
        (``"category_avg"``: mean of per-benchmark r; ``"category"``: r of category-mean scores)."""
        for row in self.cross_stage:
            if row.name == name and row.metric == metric and row.level == level:
                return row
        raise KeyError(f"No cross-stage row for {level} {name!r} and metric {metric!r}.")

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": list(self.runs),
            "source_stage": self.source_stage,
            "target_stage": self.target_stage,
            "benchmarks": list(self.benchmarks),
            "categories": list(self.categories),
            "metrics": list(self.metrics),
            "methods": list(self.methods),
            "bootstrap": {"n_boot": self.n_boot, "ci": self.ci, "seed": self.seed, "unit": "run"},
            "cross_stage": [r.to_json() for r in self.cross_stage],
            "coherence": [r.to_json() for r in self.coherence],
            "calibration_alignment": [r.to_json() for r in self.alignment],
            "scores": {run: {st: s.to_json() for st, s in stages.items()} for run, stages in self.scores.items()},
        }


def _align(
    runs: Mapping[str, Mapping[str, BenchmarkScores]], stages: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, dict[str, BenchmarkScores]]]:
    """Check every run has every stage with the same benchmarks and categories; reorder by name."""
    names = list(runs)
    if len(names) < MIN_RUNS:
        raise ValueError(
            f"Cross-run correlations need at least {MIN_RUNS} runs, got {len(names)} ({names}); add runs (e.g."
            " more data mixtures)."
        )
    first_run, first_stage = names[0], stages[0]
    for run in names:
        missing = [s for s in stages if s not in runs[run]]
        if missing:
            raise ValueError(
                f"Run {run!r} has no stage {missing[0]!r}; its stages are {sorted(runs[run])}. Pass the stage names"
                " the BenchmarkProbes were given (`stage=`)."
            )
    ref = runs[first_run][first_stage]
    ref_cat = dict(zip(ref.benchmarks, ref.categories))
    aligned: dict[str, dict[str, BenchmarkScores]] = {}
    for run in names:
        aligned[run] = {}
        for stage in stages:
            s = runs[run][stage]
            if not isinstance(s, BenchmarkScores):
                raise ValueError(f"Run {run!r}, stage {stage!r}: expected BenchmarkScores, got {type(s).__name__}.")
            have = set(s.benchmarks)
            want = set(ref.benchmarks)
            if have != want:
                raise ValueError(
                    f"Run {run!r}, stage {stage!r} has different benchmarks than run {first_run!r}, stage"
                    f" {first_stage!r}: missing {sorted(want - have)}, extra {sorted(have - want)}. Compare runs"
                    " scored on the same benchmark suite."
                )
            cat = dict(zip(s.benchmarks, s.categories))
            for b in ref.benchmarks:
                if cat[b] != ref_cat[b]:
                    raise ValueError(
                        f"Benchmark {b!r} has category {cat[b]!r} in run {run!r}, stage {stage!r} but"
                        f" {ref_cat[b]!r} in run {first_run!r}; use one suite definition for every run."
                    )
            order = [s.benchmarks.index(b) for b in ref.benchmarks]
            aligned[run][stage] = BenchmarkScores(
                ref.benchmarks,
                ref.categories,
                s.accuracy[order],
                s.confidence[order],
                None if s.ece is None else s.ece[order],
                stage=stage,
                step=s.step,
                source=s.source,
            )
    return ref.benchmarks, ref.categories, aligned


def stage_transfer(
    runs: Mapping[str, Mapping[str, BenchmarkScores]],
    *,
    source_stage: str = "pretrain",
    target_stage: str = "sft",
    metrics: Sequence[str] = METRICS,
    methods: Sequence[str] = METHODS,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> TransferReport:
    """Cross-stage transfer, intra-category coherence and calibration alignment across runs.

    Args:
        runs: run name -> stage -> :class:`BenchmarkScores` (at least 3 runs, all scored on the
            same benchmarks).
        source_stage, target_stage: the two stages compared (e.g. pretraining and SFT).
        metrics: per-benchmark metrics to correlate across stages (``accuracy``, ``confidence``,
            ``ece``).
        methods: correlation coefficients.
        n_boot: bootstrap resamples of the runs (0: no intervals).
        ci: interval coverage.
        seed: seed of the resampling; one index matrix serves the whole report.

    Raises:
        ValueError: fewer than 3 runs, a missing stage, runs with different benchmarks or
            categories, an unknown metric or method.

    Example::

        report = stage_transfer({"mixA": {"pretrain": a_pt, "sft": a_sft}, ...})
        report.transfer("colour-cloze", "accuracy").correlations["spearman"].r
    """
    if source_stage == target_stage:
        raise ValueError(f"Expected two different stages, got {source_stage!r} twice.")
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in ("accuracy", "confidence", "ece")]
    if bad or not metrics:
        raise ValueError(f"Expected metrics among ['accuracy', 'confidence', 'ece'], got {list(metrics)}.")
    methods = _check_methods(methods)
    _check_boot(n_boot, ci, seed)
    stages = (source_stage, target_stage)
    benchmarks, categories, aligned = _align(runs, stages)
    run_names = tuple(aligned)
    n_runs = len(run_names)
    idx = bootstrap_indices(n_runs, n_boot, seed)
    cats = list(dict.fromkeys(categories))

    def matrix(stage: str, metric: str) -> np.ndarray:  # [n_runs, n_benchmarks]
        return np.stack([aligned[r][stage].metric(metric) for r in run_names])

    report = TransferReport(
        runs=run_names,
        source_stage=source_stage,
        target_stage=target_stage,
        benchmarks=benchmarks,
        categories=categories,
        metrics=metrics,
        methods=methods,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        scores=aligned,
    )
    cat_cols = {c: [j for j, cc in enumerate(categories) if cc == c] for c in cats}
    for metric in metrics:
        src, tgt = matrix(source_stage, metric), matrix(target_stage, metric)
        names = (f"{metric} at {source_stage}", f"{metric} at {target_stage}")
        for j, bench in enumerate(benchmarks):
            corr = correlate_with_indices(src[:, j], tgt[:, j], idx, methods=methods, ci=ci, names=names)
            report.cross_stage.append(TransferRow("benchmark", bench, categories[j], metric, corr))
        for c in cats:
            cols = cat_cols[c]
            members = tuple(benchmarks[j] for j in cols)
            avg, n_def = _averaged_correlation(
                [(src[:, j], tgt[:, j]) for j in cols],
                idx,
                methods,
                ci,
                empty_reason=f"no benchmark in category {c!r} has a defined {metric} correlation across runs",
            )
            report.cross_stage.append(TransferRow("category_avg", c, c, metric, avg, members, n_def))
            corr = correlate_with_indices(
                src[:, cols].mean(axis=1), tgt[:, cols].mean(axis=1), idx, methods=methods, ci=ci, names=names
            )
            report.cross_stage.append(TransferRow("category", c, c, metric, corr, members))
    for stage in stages:
        for metric in metrics:
            values = matrix(stage, metric)
            for c in cats:
                report.coherence.append(_coherence(values, cat_cols[c], benchmarks, stage, c, metric, idx, methods, ci))
    for stage in stages:
        acc, conf = matrix(stage, "accuracy"), matrix(stage, "confidence")
        names = (f"confidence at {stage}", f"accuracy at {stage}")
        groups = np.repeat(np.arange(n_runs), len(benchmarks))
        report.alignment.append(
            AlignmentRow(
                stage,
                "all",
                "all",
                correlate_with_indices(
                    conf.reshape(-1), acc.reshape(-1), idx, methods=methods, ci=ci, names=names, groups=groups
                ),
            )
        )
        for c in cats:
            cols = cat_cols[c]
            g = np.repeat(np.arange(n_runs), len(cols))
            corr = correlate_with_indices(
                conf[:, cols].reshape(-1), acc[:, cols].reshape(-1), idx, methods=methods, ci=ci, names=names, groups=g
            )
            report.alignment.append(AlignmentRow(stage, "category", c, corr))
        for j, bench in enumerate(benchmarks):
            corr = correlate_with_indices(conf[:, j], acc[:, j], idx, methods=methods, ci=ci, names=names)
            report.alignment.append(AlignmentRow(stage, "benchmark", bench, corr))
    return report


def _coherence(
    values: np.ndarray,
    cols: list[int],
    benchmarks: tuple[str, ...],
    stage: str,
    category: str,
    metric: str,
    idx: np.ndarray,
    methods: tuple[str, ...],
    ci: float,
) -> CoherenceRow:
    pairs = list(combinations(cols, 2))
    names = tuple(benchmarks[j] for j in cols)
    if not pairs:
        reason = f"category {category!r} has one benchmark ({names[0]!r}): no pairs to correlate"
        n_runs = values.shape[0]
        out = {
            m: Correlation(m, math.nan, math.nan, n_runs, False, reason, ci_level=ci, n_boot=len(idx)) for m in methods
        }
        return CoherenceRow(stage, category, metric, names, 0, {m: 0 for m in methods}, out)
    out, n_defined = _averaged_correlation(
        [(values[:, a], values[:, b]) for a, b in pairs],
        idx,
        methods,
        ci,
        empty_reason=f"every pair of benchmarks in {category!r} has a constant {metric} across runs at {stage!r}",
    )
    return CoherenceRow(stage, category, metric, names, len(pairs), n_defined, out)


def _averaged_correlation(
    series: Sequence[tuple[np.ndarray, np.ndarray]],
    idx: np.ndarray,
    methods: tuple[str, ...],
    ci: float,
    *,
    empty_reason: str,
) -> tuple[dict[str, Correlation], dict[str, int]]:
    """The mean of the correlations of several paired series (each ``[n_runs]``), over the
    defined ones, with a run-bootstrap interval of that mean (per resample: the mean over the
    series defined in it). ``p_value`` is NaN: a mean of correlations has no scipy p-value.

    Returns ``(method -> Correlation, method -> number of series whose correlation is defined)``.
    """
    n_runs = len(series[0][0])
    out: dict[str, Correlation] = {}
    n_defined: dict[str, int] = {}
    for method in methods:
        point = [_scipy_point(x, y, method)[0] for x, y in series if not undefined_reason(x, y)]
        n_defined[method] = len(point)
        if not point:
            out[method] = Correlation(
                method, math.nan, math.nan, n_runs, False, empty_reason, ci_level=ci, n_boot=len(idx)
            )
            continue
        low = high = math.nan
        n_def = 0
        if len(idx):
            boot = np.stack([batched_correlation(x[idx], y[idx], method) for x, y in series], axis=1)  # [n_boot, S]
            finite = np.isfinite(boot)
            counts = finite.sum(axis=1)
            sums = np.where(finite, boot, 0.0).sum(axis=1)
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)  # mean over defined series
            low, high, n_def = percentile_interval(mean, ci)
        out[method] = Correlation(
            method, float(np.mean(point)), math.nan, n_runs, True, "", low, high, ci, len(idx), n_def
        )
    return out, n_defined


def cross_stage_display_rows(report: TransferReport) -> list[tuple[str, str, str, TransferRow]]:
    """The cross-stage rows in display order, labelled: ``(metric, kind, label, row)`` where kind is
    ``"benchmark"`` or a category level; per metric and category, the category's benchmarks, then
    ``"<category>: mean of per-benchmark r (paper)"``, then ``"<category>: r of category-mean
    scores"``. ``probes compare`` and the examples print these rows."""
    out: list[tuple[str, str, str, TransferRow]] = []
    for metric in report.metrics:
        rows = [r for r in report.cross_stage if r.metric == metric]
        for cat in dict.fromkeys(report.categories):
            for row in rows:
                if row.level == "benchmark" and row.category == cat:
                    out.append((metric, "benchmark", f"  {row.name}", row))
            for level in ("category_avg", "category"):
                for row in rows:
                    if row.level == level and row.name == cat:
                        out.append((metric, level, f"{cat or '(no category)'}: {row.label}", row))
    return out
