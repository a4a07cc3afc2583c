"""``probes compare RUN RUN ...``: two views of several runs.

* **overlay** (two or more runs): the keyword curves, priming and format distributions of the
  sources the runs share, side by side: a text table per source (``--plot FILE`` draws them
  overlaid; ``--json`` writes the numbers). Rows follow each kind's ranking rule (docs/console.md).
  LayerUpdateProbe sources (two runs, or two stages such as pretraining and SFT) are compared per
  layer group: the mean share of ``||dW||^2``, the mean relative update and the last relative drift
  of each run with their differences from the first run (``--plot`` draws the shares as grouped
  bars). Update sources pair by name, or, when every run holds exactly one, with each other.
* **benchmarks** (three or more runs, each holding BenchmarkProbe sources of two stages):
  cross-stage transfer, intra-category coherence and calibration alignment (see
  :mod:`probes.choice.stages`).

``--mode auto`` (the default) picks ``benchmarks`` when a run holds BenchmarkProbe results,
``overlay`` otherwise; ``--mode overlay`` overlays runs that hold both.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from probes.cli.common import add_debug_argument

__all__ = ["overlay_lines", "overlay_report", "plot_overlay", "print_report", "register", "report_tables", "run"]

#: kind keys (``probes.core.kinds``) the overlay compares by source name
OVERLAY_KINDS = ("keyword", "priming", "format")
#: the kind key of LayerUpdateProbe sources (paired by name, or the one source of each run)
UPDATES_KIND = "updates"


def register(sub: Any) -> None:
    """Add the ``compare`` parser to ``sub`` (an ``argparse`` subparsers object)."""
    p = sub.add_parser(
        "compare",
        help="overlay keyword, priming, format and layer-update results of runs; or correlate benchmarks across"
        " stages",
        description=(
            "overlay (2+ runs): the keyword curves, priming and format distributions of the sources the runs"
            " share, one table per source (--plot draws them); for LayerUpdateProbe sources (e.g. a pretraining"
            " and an SFT stage) the mean update share, relative update and drift per layer group of each run and"
            " their differences from the first run (--plot: grouped bars). benchmarks (3+ runs, each a run"
            " directory or a directory of per-stage run directories holding the BenchmarkProbe sources of two stages):"
            " correlations across runs (one point per run), Pearson, Spearman and Kendall with scipy p-values"
            " and bootstrap intervals over runs. --mode auto picks benchmarks when a run holds BenchmarkProbe"
            " results (--mode overlay to overlay such runs)."
        ),
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (overlay: 2+, benchmarks: 3+)")
    p.add_argument("--mode", choices=("auto", "overlay", "benchmarks"), default="auto", help="what to compare")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE", help="overlay: draw the overlay to an image")
    p.add_argument("--points", type=int, default=6, metavar="N", help="overlay: steps per curve table (default 6)")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="overlay: rows per table (default 10)")
    p.add_argument("--from", dest="source_stage", default="pretrain", help="earlier stage (default: pretrain)")
    p.add_argument("--to", dest="target_stage", default="sft", help="later stage (default: sft)")
    p.add_argument("--name", action="append", default=None, help="display name of each run, in order (repeat)")
    p.add_argument(
        "--metric",
        action="append",
        choices=("accuracy", "confidence", "ece"),
        default=None,
        help="metric to correlate across stages (repeat; default: accuracy and confidence)",
    )
    p.add_argument(
        "--method",
        action="append",
        choices=("pearson", "spearman", "kendall"),
        default=None,
        help="correlation coefficient (repeat; default: all three)",
    )
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the runs (0: none; default 1000)")
    p.add_argument("--ci", type=float, default=0.95, help="bootstrap interval coverage (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the full report as JSON")
    p.add_argument("--quiet", action="store_true", help="no tables (with --json)")
    add_debug_argument(p)
    p.set_defaults(func=run)


def _run_names(paths: Sequence[Path], names: Optional[Sequence[str]]) -> list[str]:
    if names is not None:
        if len(names) != len(paths):
            raise ValueError(f"Got {len(names)} --name values for {len(paths)} runs; give one name per run.")
        if len(set(names)) != len(names):
            raise ValueError(f"Run names must be unique, got {list(names)}.")
        return list(names)
    base = [p.resolve().name or str(p) for p in paths]
    return base if len(set(base)) == len(base) else [str(p) for p in paths]


def _has_benchmarks(path: Path) -> bool:
    """Whether ``path`` holds BenchmarkProbe results (a run, or a folder of per-stage runs)."""
    from probes.choice.stages import load_run_scores
    from probes.runlog import RunLogError

    try:
        return bool(load_run_scores(path))
    except (RunLogError, OSError, KeyError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    """Handler of ``probes compare``; returns the exit code (0 ok, 1 unreadable run, 2 bad input)."""
    from rich.console import Console

    mode = args.mode
    if mode == "auto":
        mode = "benchmarks" if any(_has_benchmarks(p) for p in args.runs) else "overlay"
    if mode == "overlay":
        return run_overlay(args)
    from probes.choice.stages import load_run_scores, stage_transfer
    from probes.runlog import RunLogError

    console = Console()
    try:
        names = _run_names(args.runs, args.name)
        runs = {}
        for name, path in zip(names, args.runs):
            try:
                runs[name] = load_run_scores(path)
            except (RunLogError, OSError, KeyError, ValueError) as err:
                raise ValueError(f"Run {name!r} ({path}): {err}") from None
        report = stage_transfer(
            runs,
            source_stage=args.source_stage,
            target_stage=args.target_stage,
            metrics=tuple(args.metric or ("accuracy", "confidence")),
            methods=tuple(args.method or ("pearson", "spearman", "kendall")),
            n_boot=args.boot,
            ci=args.ci,
            seed=args.seed,
        )
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, markup=True)
        return 2
    if not args.quiet:
        print_report(report, console=console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, allow_nan=False))
        if not args.quiet:
            console.print(f"wrote {args.json}")
    return 0


# --- overlay ------------------------------------------------------------------------------------


def run_overlay(args: argparse.Namespace) -> int:
    """``probes compare --mode overlay``: print (and optionally plot) :func:`overlay_report`."""
    import sys

    from probes.runlog import RunLogError, open_run

    try:
        if len(args.runs) < 2:
            raise ValueError("overlay needs at least two runs.")
        if args.points < 2 or args.limit < 1:
            raise ValueError(f"Expected --points >= 2 and --limit >= 1, got {args.points} and {args.limit}.")
        names = _run_names(args.runs, args.name)
    except ValueError as err:
        print(f"probes compare: error: {err}", file=sys.stderr)
        return 2
    readers = {}
    for name, path in zip(names, args.runs):
        try:
            readers[name] = open_run(path)
        except (RunLogError, OSError, ValueError) as err:
            print(f"probes compare: error: run {name!r} ({path}): {err}", file=sys.stderr)
            return 1
    report = overlay_report(readers, points=args.points, limit=args.limit)
    if not report["sections"]:
        print("probes compare: error: the runs share no keyword, priming, format or layer-update source",
              file=sys.stderr)
        return 1
    if not args.quiet:
        print("\n".join(overlay_lines(report)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False))
    if args.plot is not None:
        try:
            plot_overlay(readers, report, args.plot)
        except ImportError:
            print("probes compare: error: --plot needs matplotlib: pip install 'probes[plot]'", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"probes compare: error: cannot write {args.plot}: {err}", file=sys.stderr)
            return 1
        if not args.quiet:
            print(f"wrote {args.plot}")
    return 0


def _num(x: Any) -> Optional[float]:
    from probes.runlog.summary import json_number

    return json_number(x)


def _shared_sources(readers: dict[str, Any]) -> list[tuple[str, str]]:
    """``(source, kind key)`` of the overlay kinds that every run holds with the same kind."""
    from probes.core import kinds

    first = next(iter(readers.values()))
    out = []
    for source in first.sources():
        key = kinds.of(first.describe(source)).key
        if key not in OVERLAY_KINDS:
            continue
        if all(source in r.sources() and kinds.of(r.describe(source)).key == key for r in readers.values()):
            out.append((source, key))
    return out


def _update_sources(readers: dict[str, Any]) -> list[dict[str, str]]:
    """The LayerUpdateProbe sources to compare, as ``{run: source}``: those every run holds under the
    same name, or else, when every run holds exactly one, those."""
    from probes.core import kinds

    def updates(r: Any) -> list[str]:
        return [s for s in r.sources() if kinds.of(r.describe(s)).key == UPDATES_KIND
                and f"{s}/share" in r.metrics(f"{s}/")]

    per_run = {run: updates(r) for run, r in readers.items()}
    first = next(iter(per_run.values()))
    shared = [s for s in first if all(s in v for v in per_run.values())]
    if shared:
        return [{run: s for run in readers} for s in shared]
    if all(len(v) == 1 for v in per_run.values()):
        return [{run: v[0] for run, v in per_run.items()}]
    return []


def _updates_section(readers: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    from probes.updates.view import compare_updates, update_stats

    stats = {run: update_stats(readers[run], source) for run, source in sources.items()}
    names = list(dict.fromkeys(sources.values()))
    rows = compare_updates(stats)
    for row in rows:
        for key, values in row.items():
            if isinstance(values, dict):
                row[key] = {run: None if v is None else _num(v) for run, v in values.items()}
    return {
        "kind": "updates",
        "source": names[0] if len(names) == 1 else " vs ".join(names),
        "sources": dict(sources),
        "readings": {run: st["readings"] for run, st in stats.items()},
        "steps": {run: st["step"] for run, st in stats.items()},
        "recorded": {q: [run for run, st in stats.items() if st[q] is not None]
                     for q in ("share", "relative", "drift_relative")},
        "groups": rows,
    }


def _pick_steps(steps: list[int], points: int) -> list[int]:
    """At most ``points`` steps, evenly spread, first and last included."""
    import numpy as np

    if len(steps) <= points:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, points)).astype(int))
    return [steps[i] for i in idx]


def _labels(names: Optional[list[str]], n: int) -> list[str]:
    return names if names is not None and len(names) == n else [str(i) for i in range(n)]


def _keyword_section(readers: dict[str, Any], source: str, points: int, limit: int) -> dict[str, Any]:
    import numpy as np

    from probes.keyword.view import log10_p, pair_names, rank_pairs

    data = {}
    for run, r in readers.items():
        steps, lp, metric = log10_p(r, source)
        data[run] = (steps, lp, metric, _labels(pair_names(r.describe(source)), lp.shape[1]))
    metric = "p_seq" if all(d[2] == "p_seq" for d in data.values()) else "p_first"
    if metric == "p_first":  # a run without logp_seq: compare every run on the first token
        for run, r in readers.items():
            steps, p = r.read(f"{source}/p_first")
            with np.errstate(divide="ignore", invalid="ignore"):
                data[run] = (steps, np.log10(p.astype(np.float64)), metric, data[run][3])
    union = sorted({int(s) for d in data.values() for s in d[0]})
    curve = []
    for step in _pick_steps(union, points):
        row: dict[str, Any] = {"step": step}
        for run, (steps, lp, _, _) in data.items():
            hit = np.nonzero(steps == step)[0]
            vals = lp[hit[-1]] if hit.size else np.array([np.nan])
            ok = vals[np.isfinite(vals)]
            row[run] = _num(ok.mean()) if hit.size and ok.size else None
        curve.append(row)
    first_run = next(iter(data))
    names0 = data[first_run][3]
    shared = [n for n in names0 if all(n in d[3] for d in data.values())]
    idx0 = [names0.index(n) for n in shared]
    lp0 = data[first_run][1]
    order = [shared[k] for k in rank_pairs(lp0[0, idx0], lp0[-1, idx0])][:limit]
    pairs = []
    for name in order:
        row = {"pair": name}
        for run, (_, lp, _, names) in data.items():
            j = names.index(name)
            row[run] = {"final": _num(10.0 ** lp[-1, j]), "delta_log10": _num(lp[-1, j] - lp[0, j])}
        pairs.append(row)
    return {"kind": "keyword", "source": source, "metric": metric, "curve": curve, "pairs": pairs,
            "n_pairs": len(shared)}


def _priming_section(readers: dict[str, Any], source: str, limit: int) -> dict[str, Any]:
    from probes.priming.view import rank_samples, sample_names

    data = {}
    for run, r in readers.items():
        steps, v = r.read(f"{source}/log10_s_prime")
        have = set(r.metrics(f"{source}/"))
        p_before = r.read(f"{source}/p_before")[1][-1] if f"{source}/p_before" in have else None
        data[run] = (int(steps[-1]), v[-1], p_before, _labels(sample_names(r.describe(source)), v.shape[1]))
    first_run = next(iter(data))
    names0 = data[first_run][3]
    shared = [n for n in names0 if all(n in d[3] for d in data.values())]
    v0 = data[first_run][1]
    order = [shared[k] for k in rank_samples([v0[names0.index(n)] for n in shared])][:limit]
    samples = []
    for name in order:
        row: dict[str, Any] = {"sample": name}
        for run, (_, v, p_before, names) in data.items():
            i = names.index(name)
            row[run] = {"log10_s_prime": _num(v[i]), "p_before": _num(p_before[i]) if p_before is not None else None}
        samples.append(row)
    return {"kind": "priming", "source": source, "steps": {run: d[0] for run, d in data.items()},
            "samples": samples, "n_samples": len(shared)}


def _format_section(readers: dict[str, Any], source: str) -> dict[str, Any]:
    from probes.formats.view import format_names

    data = {}
    for run, r in readers.items():
        steps, dist = r.read(f"{source}/dist")
        have = set(r.metrics(f"{source}/"))
        entropy = r.read(f"{source}/entropy_bits")[1][-1] if f"{source}/entropy_bits" in have else None
        data[run] = (int(steps[-1]), dist[-1], entropy, _labels(format_names(r.describe(source)), dist.shape[1]))
    first_run = next(iter(data))
    shared = [n for n in data[first_run][3] if all(n in d[3] for d in data.values())]
    formats = []
    for name in shared:  # the spec's order, as every format view
        formats.append({"format": name, **{run: _num(d[1][d[3].index(name)]) for run, d in data.items()}})
    return {"kind": "format", "source": source, "steps": {run: d[0] for run, d in data.items()},
            "formats": formats, "entropy_bits": {run: _num(d[2]) for run, d in data.items()}}


def overlay_report(readers: dict[str, Any], *, points: int = 6, limit: int = 10) -> dict[str, Any]:
    """The numbers of the overlay: per shared keyword source the mean log10 P over pairs at up to
    ``points`` steps and the final P and its change per pair (pairs by the keyword ranking rule of
    the first run); per priming source the final log10 S_prime and P_before per sample (by the
    priming rule); per format source the final share of every format and the entropy; per pair of
    LayerUpdateProbe sources (:func:`_update_sources`) the rows of
    :func:`probes.updates.view.compare_updates`.

    Args:
        readers: run name -> open run (:func:`probes.runlog.open_run`), in display order.
        points, limit: steps per curve table and rows per table.
    """
    sections = []
    for source, key in _shared_sources(readers):
        if key == "keyword" and all(f"{source}/p_first" in r.metrics(f"{source}/") for r in readers.values()):
            sections.append(_keyword_section(readers, source, points, limit))
        elif key == "priming" and all(f"{source}/log10_s_prime" in r.metrics(f"{source}/") for r in readers.values()):
            sections.append(_priming_section(readers, source, limit))
        elif key == "format" and all(f"{source}/dist" in r.metrics(f"{source}/") for r in readers.values()):
            sections.append(_format_section(readers, source))
    for sources in _update_sources(readers):
        sections.append(_updates_section(readers, sources))
    return {"runs": list(readers), "sections": sections}


def overlay_lines(report: dict[str, Any]) -> list[str]:
    """The text tables of :func:`overlay_report` (numbers by ``probes.console.numbers.fmt_num``)."""
    from probes.console.numbers import printable, table

    runs = report["runs"]
    lines = ["runs: " + ", ".join(printable(r) for r in runs)]
    for sec in report["sections"]:
        src = printable(sec["source"])
        if sec["kind"] == "keyword":
            m = sec["metric"]
            lines += ["", f"{src} (keyword): mean log10 {m} over pairs"]
            lines.append(table(["step", *runs], [[row["step"], *(row[r] for r in runs)] for row in sec["curve"]]))
            lines += ["", f"{src} (keyword): final {m} and Δlog10 since the first reading,"
                          f" pairs by |Δlog10 {m}| of {printable(runs[0])} ({len(sec['pairs'])} of {sec['n_pairs']})"]
            heads = ["pair"] + [h for r in runs for h in (f"{r} {m}", f"{r} Δlog10")]
            rows = [[row["pair"], *(v for r in runs for v in (row[r]["final"], row[r]["delta_log10"]))]
                    for row in sec["pairs"]]
            lines.append(table(heads, rows))
        elif sec["kind"] == "priming":
            at = ", ".join(f"{printable(r)} step {sec['steps'][r]}" for r in runs)
            lines += ["", f"{src} (priming): final log10 S_prime and P_before ({at}),"
                          f" samples by log10 S_prime of {printable(runs[0])}"]
            heads = ["sample"] + [h for r in runs for h in (f"{r} log10 s_prime", f"{r} p_before")]
            rows = [[row["sample"], *(v for r in runs for v in (row[r]["log10_s_prime"], row[r]["p_before"]))]
                    for row in sec["samples"]]
            lines.append(table(heads, rows))
        elif sec["kind"] == "updates":
            lines += _updates_lines(sec, runs)
        else:
            at = ", ".join(f"{printable(r)} step {sec['steps'][r]}" for r in runs)
            lines += ["", f"{src} (format): final share of each format ({at})"]
            rows = [[row["format"], *(row[r] for r in runs)] for row in sec["formats"]]
            rows.append(["entropy (bits)", *(sec["entropy_bits"][r] for r in runs)])
            lines.append(table(["format", *runs], rows))
    return lines


def _run_label(run: str, source: str) -> str:
    """``run``, or ``run (source)`` when the run's update source has another name."""
    from probes.console.numbers import printable

    return printable(run) if run == source else f"{printable(run)} ({printable(source)})"


def _updates_lines(sec: dict[str, Any], runs: list[str]) -> list[str]:
    """One table per recorded quantity: per group the value of each run and its difference from the
    first run's."""
    from probes.console.numbers import printable, table
    from probes.updates.view import UPDATE_QUANTITIES

    src = printable(sec["source"])
    of = ", ".join(f"{_run_label(r, sec['sources'][r])} ({sec['readings'][r]} readings to step {sec['steps'][r]})"
                   for r in runs)
    lines = ["", f"{src} (layer updates): {of}"]
    for q, label in UPDATE_QUANTITIES.items():
        if not sec["recorded"][q]:
            continue
        heads = ["group", *runs, *(f"{r} - {runs[0]}" for r in runs[1:])]
        rows = [[row["group"], *(row[q][r] for r in runs), *(row[f"{q}_difference"][r] for r in runs[1:])]
                for row in sec["groups"]]
        lines += ["", f"{src} (layer updates): {label}"]
        lines.append(table(heads, rows))
    return lines


def plot_overlay(readers: dict[str, Any], report: dict[str, Any], path: Path) -> None:
    """Draw the overlay: keyword curves (mean log10 P over pairs, and the top pair, per run),
    final log10 S_prime per sample, the final format distribution and the mean layer-update share per
    group as grouped bars per run.

    Raises:
        ImportError: matplotlib is missing.
        OSError: the image cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from probes.console.numbers import printable
    from probes.keyword.view import log10_p, pair_names

    sections = report["sections"]
    runs = report["runs"]
    fig, axes = plt.subplots(len(sections), 1, figsize=(10, 3.2 * len(sections)), squeeze=False)
    for ax, sec in zip(axes[:, 0], sections):
        src = printable(sec["source"])
        if sec["kind"] == "keyword":
            top = sec["pairs"][0]["pair"] if sec["pairs"] else None
            for run, r in readers.items():
                steps, lp, _ = log10_p(r, sec["source"])
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(np.where(np.isfinite(lp), lp, np.nan), axis=1)
                line = ax.plot(steps, mean, label=f"{printable(run)} mean", linewidth=1.5)[0]
                names = pair_names(r.describe(sec["source"])) or []
                if top in names:
                    ax.plot(steps, lp[:, names.index(top)], linestyle="--", color=line.get_color(),
                            label=f"{printable(run)} {printable(top)}")
            ax.set_xlabel("step")
            ax.set_ylabel(f"log10 {sec['metric']}")
            ax.set_title(f"{src}: keyword probabilities per run")
        elif sec["kind"] == "updates":
            x = np.arange(len(sec["groups"]))
            width = 0.8 / max(len(runs), 1)
            for k, run in enumerate(runs):
                ax.bar(x + k * width, [row["share"][run] for row in sec["groups"]], width,
                       label=_run_label(run, sec["sources"][run]))
            ax.set_xticks(x + width * (len(runs) - 1) / 2, [printable(row["group"]) for row in sec["groups"]],
                          fontsize="x-small")
            ax.set_ylabel("mean share of ||dW||^2")
            ax.set_title(f"{src}: where the updates land, per run")
        else:
            key, rows = ("sample", sec["samples"]) if sec["kind"] == "priming" else ("format", sec["formats"])
            x = np.arange(len(rows))
            width = 0.8 / max(len(runs), 1)
            for k, run in enumerate(runs):
                vals = [(row[run]["log10_s_prime"] if key == "sample" else row[run]) for row in rows]
                ax.bar(x + k * width, [np.nan if v is None else v for v in vals], width, label=printable(run))
            ax.set_xticks(x + width * (len(runs) - 1) / 2, [printable(row[key]) for row in rows], fontsize="x-small")
            ax.set_ylabel("log10 S_prime" if key == "sample" else "share")
            ax.set_title(f"{src}: {'priming per sample' if key == 'sample' else 'format distribution'} per run")
        ax.legend(fontsize="x-small", loc="best")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def _cell(c: Any) -> str:
    if not c.defined:
        return "[dim]undefined[/dim]"
    p = "" if math.isnan(c.p_value) else f" p={c.p_value:.2g}"
    ci = "" if math.isnan(c.ci_low) else f" [{c.ci_low:+.2f},{c.ci_high:+.2f}]"
    return f"{c.r:+.2f}{p}{ci}"


def _method_columns(table: Any, methods: Sequence[str]) -> None:
    for m in methods:
        table.add_column(m, no_wrap=True)


def report_tables(report: Any) -> list[Any]:
    """Rich tables of a :class:`~probes.choice.stages.TransferReport` (runs, transfer,
    coherence, alignment), plus a table of the reasons of undefined coefficients if any."""
    from rich.table import Table

    methods = list(report.methods)
    reasons: dict[str, None] = {}
    ci = f"{report.ci:.0%} CI over runs" if report.n_boot else "no bootstrap"

    runs = Table(title=f"Runs: mean over {len(report.benchmarks)} benchmarks at the end of each stage")
    for col in ("run", "stage", "step", "accuracy", "confidence", "ece"):
        runs.add_column(col, justify="left" if col in ("run", "stage") else "right")
    for name, stages in report.scores.items():
        for stage, s in stages.items():
            ece = "" if s.ece is None else f"{float(s.ece.mean()):.3f}"
            step = "" if s.step is None else str(s.step)
            runs.add_row(name, stage, step, f"{s.accuracy.mean():.3f}", f"{s.confidence.mean():.3f}", ece)

    def add(table: Any, lead: list[str], corr: dict[str, Any]) -> None:
        for c in corr.values():
            if not c.defined:
                reasons[c.reason] = None
        table.add_row(*lead, *(_cell(corr[m]) for m in methods))

    transfer = Table(
        title=f"Cross-stage transfer {report.source_stage} -> {report.target_stage}:"
        f" r across {len(report.runs)} runs (p, {ci})"
    )
    # names fold onto a second line rather than being cut: cut names can make two rows look the same
    transfer.add_column("metric", overflow="fold")
    transfer.add_column("benchmark / category statistic", overflow="fold")
    _method_columns(transfer, methods)
    from probes.choice.stages import cross_stage_display_rows

    previous = None
    for metric, level, label, row in cross_stage_display_rows(report):
        if previous is not None and metric != previous:
            transfer.add_section()
        previous = metric
        add(transfer, [metric, label if level == "benchmark" else f"[bold]{label}[/bold]"], row.correlations)
    transfer.add_section()

    coherence = Table(title=f"Intra-category coherence: mean pairwise r of benchmarks across runs ({ci})")
    for col in ("stage", "category", "metric", "pairs"):
        coherence.add_column(col, overflow="fold")
    _method_columns(coherence, methods)
    for crow in report.coherence:
        pairs = f"{min(crow.n_pairs_defined.values(), default=0)}/{crow.n_pairs}"
        add(coherence, [crow.stage, crow.category, crow.metric, pairs], crow.coherence)

    alignment = Table(title=f"Calibration alignment: r(confidence, accuracy) across runs (p, {ci})")
    for col in ("stage", "level", "name", "n"):
        alignment.add_column(col, overflow="fold")
    _method_columns(alignment, methods)
    for arow in report.alignment:
        n = next(iter(arow.correlations.values())).n
        add(alignment, [arow.stage, arow.level, arow.name, str(n)], arow.correlations)

    tables = [runs, transfer, coherence, alignment]
    if reasons:
        why = Table(title="Undefined coefficients")
        why.add_column("reason")
        for reason in reasons:
            why.add_row(reason)
        tables.append(why)
    return tables


def print_report(report: Any, *, console: Any = None) -> None:
    """Print :func:`report_tables` to ``console`` (a ``rich.console.Console``; a new one if None)."""
    from rich.console import Console

    console = console or Console()
    for table in report_tables(report):
        console.print(table)
