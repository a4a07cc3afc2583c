"""`probes compare`: every printed cell against the run logs read directly and scipy.

The runs are written with known per-benchmark values (``tests/analysis/_util.write_benchmark_run``);
the test reads them back with the reader API (the end-of-stage reading of each stage's source)
and recomputes each coefficient with ``scipy.stats`` from those raw values, then parses the text
tables the command prints (at 200 columns, so no cell is cut) and compares cell by cell.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from probes.cli.entry import main
from probes.runlog import open_run
from tests.analysis._util import small_suite, write_benchmark_run

METHODS = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("compare")
    suite = small_suite()
    rng = np.random.default_rng(7)
    paths = []
    for i in range(5):
        stages = {
            stage: {
                "accuracy": rng.uniform(0, 1, 3), "confidence": rng.uniform(0.3, 1, 3), "ece": rng.uniform(0, 0.3, 3)
            }
            for stage in ("pretrain", "sft")
        }
        write_benchmark_run(tmp / f"mix{i}", suite, stages)
        paths.append(tmp / f"mix{i}")
    return paths


def logged(path: Path) -> dict[str, dict]:
    """stage -> {"step", "benchmarks", "categories", metric -> [n_benchmarks]} at the end of the stage."""
    run = open_run(path)
    out = {}
    for source in run.sources():
        d = run.describe(source)
        steps, end = run.read(f"{source}/end_of_stage")
        k = int(np.nonzero(end)[0][-1]) if end.any() else len(steps) - 1
        entry = {"step": int(steps[k]), "benchmarks": [b["name"] for b in d["benchmarks"]],
                 "categories": [b["category"] for b in d["benchmarks"]]}
        for metric in ("accuracy", "confidence", "ece"):
            entry[metric] = run.read(f"{source}/{metric}")[1][k].astype(np.float64)
        out[d["stage"]] = entry
    return out


def tables(text: str) -> dict[str, list[list[str]]]:
    """Body rows of each rich table, by the first words of its title."""
    out: dict[str, list[list[str]]] = {}
    title = None
    in_title = False  # a long title wraps onto more lines above its table
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith(("┏", "┃", "┡", "│", "├", "└")):
            if not in_title:
                title = s.split(":")[0]
                out.setdefault(title, [])
            in_title = True
            continue
        in_title = False
        if s.startswith("│") and title is not None:
            out[title].append([c.strip() for c in s.strip("│").split("│")])
    return out


def cell(text: str) -> tuple[float, float | None]:
    """'+0.34 p=0.66' -> (0.34, 0.66); 'undefined' -> (nan, None)."""
    if text == "undefined":
        return math.nan, None
    m = re.fullmatch(r"([+-]\d+\.\d+)(?: p=(\S+))?", text)
    assert m, text
    return float(m[1]), (float(m[2]) if m[2] else None)


def agrees(text: str, x: np.ndarray, y: np.ndarray, method: str) -> bool:
    r, p = METHODS[method](x, y)
    got_r, got_p = cell(text)
    if not np.isfinite(r):
        return math.isnan(got_r)
    ok = abs(got_r - r) <= 0.005 + 1e-9
    if got_p is not None:  # p printed to 2 significant digits
        ok &= abs(got_p - p) <= max(0.051 * p, 1e-3)
    return bool(ok)


def test_every_cell_of_compare_matches_scipy_on_the_logged_values(runs, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["compare", *map(str, runs), "--boot", "0"]) == 0
    text = capsys.readouterr().out
    t = tables(text)
    data = {p.name: logged(p) for p in runs}
    names = list(data)
    bench = data[names[0]]["pretrain"]["benchmarks"]
    cats = data[names[0]]["pretrain"]["categories"]

    assert all(
        len(t[k]) >= 4 for k in ("Runs", "Cross-stage transfer pretrain -> sft", "Intra-category coherence",
                                 "Calibration alignment")
    ), {k: len(v) for k, v in t.items()}
    # Runs: mean over benchmarks at the end of each stage
    rows = t["Runs"]
    assert len(rows) == 2 * len(runs)
    for run, stage, step, acc, conf, ece in rows:
        d = data[run][stage]
        assert int(step) == d["step"]
        for printed, metric in ((acc, "accuracy"), (conf, "confidence"), (ece, "ece")):
            assert float(printed) == pytest.approx(d[metric].mean(), abs=5e-4), (run, stage, metric)

    # Cross-stage transfer: r(pretrain value, sft value) across runs, per benchmark; per category
    # the mean of the per-benchmark r (the paper's statistic) and the r of category-mean scores
    rows = t["Cross-stage transfer pretrain -> sft"]
    assert len(rows) >= 2 * (len(bench) + 2 * len(set(cats)))
    avg_label, mean_label = ": mean of per-benchmark r (paper)", ": r of category-mean scores"
    for row in rows:
        metric, label = row[0], row[1]
        if label.endswith(avg_label):
            cols = [j for j, c in enumerate(cats) if c == label.removesuffix(avg_label)]
            for method, printed in zip(METHODS, row[2:5]):
                rs = [METHODS[method](np.array([data[n]["pretrain"][metric][j] for n in names]),
                                      np.array([data[n]["sft"][metric][j] for n in names]))[0] for j in cols]
                rs = [r for r in rs if np.isfinite(r)]
                got, _ = cell(printed)
                assert (math.isnan(got) if not rs else abs(got - float(np.mean(rs))) <= 0.005 + 1e-9), (
                    metric, label, method, printed)
            continue
        if label.endswith(mean_label):
            cat = label.removesuffix(mean_label)
            cols = [j for j, c in enumerate(cats) if c == cat]
            x = np.array([data[n]["pretrain"][metric][cols].mean() for n in names])
            y = np.array([data[n]["sft"][metric][cols].mean() for n in names])
        else:
            j = bench.index(label)
            x = np.array([data[n]["pretrain"][metric][j] for n in names])
            y = np.array([data[n]["sft"][metric][j] for n in names])
        for method, printed in zip(METHODS, row[2:5]):
            assert agrees(printed, x, y, method), (metric, label, method, printed)

    # Intra-category coherence: mean pairwise r of the category's benchmarks across runs
    for stage, cat, metric, pairs, *cells in t["Intra-category coherence"]:
        cols = [j for j, c in enumerate(cats) if c == cat]
        combos = list(itertools.combinations(cols, 2))
        assert pairs.split("/")[1] == str(len(combos))
        for method, printed in zip(METHODS, cells):
            if not combos:
                assert printed == "undefined"
                continue
            rs = [METHODS[method]([data[n][stage][metric][a] for n in names],
                                  [data[n][stage][metric][b] for n in names])[0] for a, b in combos]
            assert cell(printed)[0] == pytest.approx(float(np.mean(rs)), abs=0.005 + 1e-9), (stage, cat, method)

    # Calibration alignment: r(confidence, accuracy) over (run, benchmark) points
    for stage, level, name, n, *cells in t["Calibration alignment"]:
        if level == "all":
            cols = list(range(len(bench)))
        elif level == "category":
            cols = [j for j, c in enumerate(cats) if c == name]
        else:
            cols = [bench.index(name)]
        conf = np.array([data[r][stage]["confidence"][j] for r in names for j in cols])
        acc = np.array([data[r][stage]["accuracy"][j] for r in names for j in cols])
        assert int(n) == len(conf)
        for method, printed in zip(METHODS, cells):
            assert agrees(printed, conf, acc, method), (stage, level, name, method, printed)


def test_compare_at_80_columns_cuts_no_name(runs, capsys, monkeypatch) -> None:
    """Names fold onto a second line instead of being cut with an ellipsis (two cut benchmark names
    could look the same)."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compare", *map(str, runs), "--boot", "0"]) == 0
    text = capsys.readouterr().out
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80
