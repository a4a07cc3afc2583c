"""``probes compare`` through its own argparse registration, on real run logs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from probes.choice.stages import load_run_scores, stage_transfer
from probes.cli import compare
from tests.analysis._util import small_suite, write_benchmark_run


def parse(argv):
    parser = argparse.ArgumentParser(prog="probes")
    compare.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def runs(tmp_path):
    suite = small_suite()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        stages = {
            stage: {
                "accuracy": rng.uniform(0, 1, 3),
                "confidence": rng.uniform(0.3, 1, 3),
                "ece": rng.uniform(0, 0.3, 3),
            }
            for stage in ("pretrain", "sft")
        }
        stages["sft"]["accuracy"][2] = 0.5  # constant across runs: undefined, shown as such
        write_benchmark_run(tmp_path / f"mix{i}", suite, stages)
        paths.append(tmp_path / f"mix{i}")
    return paths


def test_compare_prints_tables_and_writes_json(runs, tmp_path, capsys):
    out = tmp_path / "report" / "compare.json"
    args = parse(["compare", *map(str, runs), "--boot", "200", "--seed", "4", "--json", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Cross-stage transfer pretrain -> sft" in text
    assert "Intra-category coherence" in text and "Calibration alignment" in text
    assert "undefined" in text and "accuracy at sft is constant" in text
    got = json.loads(out.read_text())
    ref = stage_transfer({p.name: load_run_scores(p) for p in runs}, n_boot=200, seed=4).to_json()
    assert got == json.loads(json.dumps(ref))
    assert got["runs"] == ["mix0", "mix1", "mix2", "mix3"]
    row = next(r for r in got["cross_stage"] if r["name"] == "taste-cloze" and r["metric"] == "accuracy")
    assert row["correlations"]["pearson"]["r"] is None and not row["correlations"]["pearson"]["defined"]


def test_compare_options_names_metrics_methods(runs, tmp_path):
    out = tmp_path / "c.json"
    argv = ["compare", *map(str, runs), "--name", "a", "--name", "b", "--name", "c", "--name", "d"]
    argv += ["--metric", "ece", "--method", "kendall", "--boot", "0", "--json", str(out), "--quiet"]
    args = parse(argv)
    assert args.func(args) == 0
    got = json.loads(out.read_text())
    assert got["runs"] == ["a", "b", "c", "d"] and got["metrics"] == ["ece"] and got["methods"] == ["kendall"]
    assert {r["metric"] for r in got["cross_stage"]} == {"ece"}
    assert got["cross_stage"][0]["correlations"]["kendall"]["ci_low"] is None  # no bootstrap asked


def test_compare_bad_input_exits_2_with_a_message(runs, tmp_path, capsys):
    args = parse(["compare", *map(str, runs[:2])])
    assert args.func(args) == 2
    assert "at least 3 runs, got 2" in capsys.readouterr().out
    args = parse(["compare", *map(str, runs), "--to", "rl"])
    assert args.func(args) == 2
    assert "has no stage 'rl'" in capsys.readouterr().out
    args = parse(["compare", *map(str, runs[:3]), str(tmp_path / "missing")])
    assert args.func(args) == 2
    assert "missing" in capsys.readouterr().out
    # a run scored on another suite
    other = small_suite().benchmarks[:2]
    from probes.choice.spec import BenchmarkSuite

    stages = {s: {"accuracy": [0.1, 0.2], "confidence": [0.5, 0.6]} for s in ("pretrain", "sft")}
    write_benchmark_run(tmp_path / "other", BenchmarkSuite(other), stages)
    args = parse(["compare", *map(str, runs[:3]), str(tmp_path / "other")])
    assert args.func(args) == 2
    assert "missing ['taste-cloze']" in capsys.readouterr().out
    shard = sorted(runs[3].glob("shard-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:40])  # truncated: the reader's typed error, reported
    args = parse(["compare", *map(str, runs)])
    assert args.func(args) == 2
    assert "Run 'mix3'" in capsys.readouterr().out
    args = parse(["compare", *map(str, runs), "--name", "x"])
    assert args.func(args) == 2
    assert "1 --name values for 4 runs" in capsys.readouterr().out
