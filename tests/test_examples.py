"""Smoke tests of every script in ``examples/``, each in its small CI setting.

Every example runs as a subprocess (``sys.executable``) exactly as a user would run it. The tests
then check what it printed against what it logged (its run log or JSON file) or against an
independent computation, and check the signs and thresholds the example's docstring claims, so
an example that runs but prints wrong or meaningless figures fails too.

The examples are started together when the first of these tests runs, at most
``PROBES_EXAMPLE_JOBS`` (default 2) at a time, longest first: each uses one torch thread, so on
2 cores this halves the wall time. Only the examples of the selected tests are started.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
from scipy import stats

from probes.demos import ByteTokenizer, GPTConfig, TinyLM
from probes.runlog import open_run
from tests.reference import brute_force_pair

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("transformers", "tokenizers"))
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"


def commands(tmp: Path) -> dict[str, list[str]]:
    """Each example's command line (after ``python``), longest-running first."""
    return {
        "priming_experiment": ["examples/priming_experiment.py", "--smoke", "--json", str(tmp / "priming.json")],
        "rl_format_collapse": ["examples/rl_format_collapse.py", "--quick"],
        "sft_hf_gpt2": ["examples/sft_hf_gpt2.py", "--quick", "--out", str(tmp / "sft")],
        "stage_transfer": ["examples/stage_transfer.py", "--quick", "--out", str(tmp / "stage_transfer")],
        "keyword_probe_quickstart": ["examples/keyword_probe_quickstart.py", "--quick"],
        "test_training_loop": ["-m", "pytest", "examples/test_training_loop.py", "-q", "-p", "no:cacheprovider"],
        "replay_and_plot": ["examples/replay_and_plot.py", "--quick", "--out", str(tmp / "replay")],
    }


@dataclass
class Result:
    """What one example printed, its exit code and wall time."""

    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def checked(self) -> Result:
        assert self.returncode == 0, (
            f"examples/{self.name} exited with {self.returncode}\n--- stdout (tail)\n{self.stdout[-3000:]}"
            f"\n--- stderr (tail)\n{self.stderr[-3000:]}"
        )
        return self

    def lines(self, pattern: str) -> Iterator[re.Match[str]]:
        return re.finditer(pattern, self.stdout, re.MULTILINE)

    def line(self, pattern: str) -> re.Match[str]:
        m = re.search(pattern, self.stdout, re.MULTILINE)
        assert m is not None, f"examples/{self.name}: no line matches {pattern!r} in\n{self.stdout[-3000:]}"
        return m


def run_example(name: str, argv: list[str]) -> Result:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONHASHSEED": "0"}
    env.pop("FORCE_COLOR", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False
    )
    return Result(name, proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


class Examples:
    """Runs the selected examples on a small thread pool; :meth:`get` waits for one."""

    def __init__(self, tmp: Path, names: set[str], jobs: int) -> None:
        self.tmp = tmp
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.futures: dict[str, Future[Result]] = {
            name: self.pool.submit(run_example, name, argv) for name, argv in commands(tmp).items() if name in names
        }

    def get(self, name: str) -> Result:
        result = self.futures[name].result()
        print(f"examples/{name}: {result.seconds:.1f} s")
        return result.checked()


@pytest.fixture(scope="module")
def examples(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Examples]:
    selected = {item.name for item in request.session.items if item.module is sys.modules[__name__]}
    names = {name for name in commands(Path()) if f"test_{name}" in selected}
    if not HAVE_HF:
        names.discard("sft_hf_gpt2")
    jobs = max(1, int(os.environ.get("PROBES_EXAMPLE_JOBS", "2")))
    runner = Examples(tmp_path_factory.mktemp("examples"), names, jobs)
    yield runner
    runner.pool.shutdown(wait=True, cancel_futures=True)


def test_every_example_has_a_smoke_test() -> None:
    """Each example runs here or is run by another test file that names it (a study's own tests)."""
    here = set(commands(Path()))
    elsewhere = {
        p.stem
        for p in EXAMPLES.glob("*.py")
        if p.stem not in here
        and any(f"examples/{p.name}" in t.read_text() or f'"{p.stem}"' in t.read_text()
                for t in (ROOT / "tests").rglob("test_*.py") if t.resolve() != Path(__file__).resolve())
    }
    assert {p.stem for p in EXAMPLES.glob("*.py")} == here | elsewhere


# --- examples/keyword_probe_quickstart.py ----------------------------------------------------------

QUICKSTART_PAIRS = [
    ("sand", "the colour of sand is", "yellow"),
    ("honey", "the taste of honey is", "sweet"),
    ("thunder", "the sound of thunder is", "loud"),
    ("sand/bitter", "the colour of sand is", "bitter"),
    ("sand/purple", "the colour of sand is", "purple"),
]


def test_keyword_probe_quickstart(examples: Examples) -> None:
    r = examples.get("keyword_probe_quickstart")
    head = r.line(r"^(\d+) readings at steps 0\.\.(\d+); final loss")
    assert int(head[2]) == 250 and int(head[1]) == 251  # one reading before every update, plus the final one
    rows = {
        m[1]: (float(m[2]), float(m[3]), float(m[4]))
        for m in r.lines(rf"^(\S+)\s+\w+\s+({NUMBER})\s+({NUMBER})\s+({NUMBER}) decades$")
    }
    assert list(rows) == [name for name, _, _ in QUICKSTART_PAIRS]
    for before, after, change in rows.values():
        assert change == pytest.approx(math.log10(after / before), abs=0.01)
    # "P before" is the untrained model's reading: the same seeded model scored here by the
    # brute-force one-pair reference (one unpadded forward, explicit loop over the keyword's tokens;
    # the separator belongs to the keyword), not by the probe
    pl.seed_everything(0, verbose=False)
    module = TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)).eval()
    tok = ByteTokenizer()
    for name, context, keyword in QUICKSTART_PAIRS:
        ref = brute_force_pair(module.model, tok.encode(context), tok.encode(" " + keyword))
        assert rows[name][0] == pytest.approx(math.exp(ref["logp_seq"]), rel=6e-3), name
    for fact in ("sand", "honey", "thunder"):  # true facts of the corpus are learned
        assert rows[fact][1] > 0.01 and rows[fact][2] > 5
    assert rows["sand/bitter"][1] < rows["sand"][1] / 1e3  # a word of another theme stays far behind
    assert rows["sand/purple"][2] < 0  # a word the corpus never contains falls


# --- examples/sft_hf_gpt2.py ------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_HF, reason="needs the hf extra: pip install 'probes[hf]'")
def test_sft_hf_gpt2(examples: Examples) -> None:
    r = examples.get("sft_hf_gpt2")
    run = open_run(examples.tmp / "sft")
    assert run.status == "finished" and run.sources() == ["labels", "rating_format", "sentiment"]
    steps, unclassified = run.read("labels/unclassified")
    conformity = 1.0 - unclassified.astype(np.float64)
    assert steps.tolist() == list(range(0, 121, 10))
    assert int(r.line(r"\((\d+) readings per probe")[1]) == len(steps)

    m = r.line(rf"^label-space conformity ({NUMBER}) -> ({NUMBER}) \(>= 0\.9 from step (-?\d+)\)")
    assert float(m[1]) == pytest.approx(conformity[0], abs=6e-4)
    assert float(m[2]) == pytest.approx(conformity[-1], abs=6e-4)
    assert int(m[3]) == int(steps[np.argmax(conformity >= 0.9)])
    assert conformity[0] < 0.05 and conformity[-1] >= 0.9  # SFT teaches the declared answer set

    b_steps, accuracy = run.read("sentiment/accuracy")
    m = r.line(rf"^held-out accuracy ({NUMBER}) -> ({NUMBER})")
    assert (float(m[1]), float(m[2])) == pytest.approx((accuracy[0, 0], accuracy[-1, 0]), abs=6e-3)
    assert accuracy[-1, 0] >= 0.9 and b_steps.tolist() == steps.tolist()

    _, dist = run.read("rating_format/dist")
    share = float(dist[-1, 0] / dist[-1, :2].sum())
    m = r.line(rf"^rating styles at the end: numeric ({NUMBER}), words ({NUMBER}) of classified.* collapsed: (\w+)$")
    assert float(m[1]) == pytest.approx(share, abs=6e-4) and float(m[2]) == pytest.approx(1 - share, abs=6e-4)
    assert 0.4 <= share <= 0.95  # both answer styles of the SFT data (70/30) survive
    assert m[3] == "no" and not run.read("rating_format/collapsed")[1].any()
    # the live console is in plain mode in a pipe: summary lines name both format sources
    r.line(r"^probes step \d+ .*labels: .*rating_format: ")


def test_sft_hf_gpt2_without_the_hf_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("sft_hf_gpt2_example", EXAMPLES / "sft_hf_gpt2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    assert module.main(["--quick"]) == 2
    assert "pip install 'probes[hf]'" in capsys.readouterr().err


# --- examples/replay_and_plot.py ---------------------------------------------------------------------


def test_replay_and_plot(examples: Examples) -> None:
    r = examples.get("replay_and_plot")
    out = examples.tmp / "replay"
    run = open_run(out / "run")
    steps, p_first = run.read("keyword/p_first")
    _, logp_seq = run.read("keyword/logp_seq")
    names = [p["name"] for p in run.describe("keyword")["probe_set"]["pairs"]]
    assert run.status == "finished" and steps.tolist() == list(range(61))

    # the summary: header and the per-pair table agree with the log
    r.line(r"^status\s+finished\s+timeline 0 of 1\s+shards \d+\s+last step 60$")
    r.line(r"^keyword \(KeywordProbe\): 61 records, steps 0\.\.60$")
    # pairs ranked by the change of the chained probability p_seq (the one ranking rule)
    p_seq = np.exp(logp_seq.astype(np.float64))
    table = r.stdout.split("pairs by |change of log10 p_seq|", 1)[1].splitlines()[2 : 2 + len(names)]
    for line in table:
        pair, _, first, final, delta, first_token_final, _ = re.split(r"\s{2,}", line.strip())
        i = names.index(pair)
        assert (float(first), float(final)) == pytest.approx((p_seq[0, i], p_seq[-1, i]), rel=1e-3)
        assert float(delta) == pytest.approx(math.log10(p_seq[-1, i] / p_seq[0, i]), abs=2e-3)
        assert float(first_token_final) == pytest.approx(p_first[-1, i], rel=1e-3)

    # the CSV export holds the logged values exactly
    with open(out / "keyword.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert [int(row[0]) for row in body] == steps.tolist()
    for i, name in enumerate(names):
        col = header.index(f"p_first[{name}]")
        # exact: the shortest round-trip text of the logged dtype
        assert np.array_equal(np.array([float(row[col]) for row in body]).astype(p_first.dtype), p_first[:, i])
    r.line(rf"^wrote {re.escape(str(out / 'keyword.csv'))}: 61 rows x {len(header)} columns$")

    if HAVE_MPL:
        png = (out / "plot.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        r.line(r"plot\.png \(1 panels\)$")
    else:
        r.line(r"^no plot: matplotlib is missing")

    # the replayed dashboard: last step, and the pair that moved most (chained probability) on top
    r.line(r"^probes replay\s+step 60\b")
    change = logp_seq[-1].astype(np.float64) - logp_seq[0]
    top = r.line(rf"^│ (\S.*?)\s+{NUMBER}\s+{NUMBER}\s+×({NUMBER})")
    i = int(np.argmax(np.abs(change)))
    assert top[1] == names[i] and float(top[2]) == pytest.approx(math.exp(change[i]), rel=0.06)
    r.line(r"^replayed .*: probes replay step 60 .*keyword: top ")


# --- examples/test_training_loop.py ------------------------------------------------------------------


def test_test_training_loop(examples: Examples) -> None:
    r = examples.get("test_training_loop")
    r.line(r"\b1 passed\b")


# --- examples/priming_experiment.py ------------------------------------------------------------------


def test_priming_experiment(examples: Examples) -> None:
    r = examples.get("priming_experiment")
    data = json.loads((examples.tmp / "priming.json").read_text())
    facts = {f["name"]: f for f in data["facts"]}
    rows = {
        m[1]: [float(x) for x in m.groups()[2:]]
        for m in r.lines(rf"^(\S+)\s+(\w+)\s+({NUMBER}) \|\s+({NUMBER})\s+({NUMBER}) \|\s+({NUMBER})\s+({NUMBER})$")
    }
    assert list(rows) == ["banana-yellow", "jam-sweet", "pearl-vermilion"]
    for name, (p_before, s_mem, s_prime, topk_mem, topk_prime) in rows.items():
        plain, pruned = facts[name]["plain"], facts[name]["ignore_topk"]
        assert plain["exposures"] == 20  # every presentation reached the weights that were read
        printed = (p_before, s_mem, s_prime, topk_mem, topk_prime)
        logged = (plain["log10_p_before_seq"], plain["log10_s_mem"], plain["log10_s_prime"],
                  pruned["log10_s_mem"], pruned["log10_s_prime"])
        assert printed == pytest.approx(logged, abs=6e-3)
        assert s_mem > 0  # every fact is memorised
    # the printed correlations, recomputed here with scipy from the logged per-fact values (with 3
    # facts in this CI setting a coefficient proves nothing about the paper's claim: its sign is
    # not asserted; the README's figures come from the full 12-fact run)
    x = [facts[n]["plain"]["log10_p_before_seq"] for n in rows]
    y = [facts[n]["plain"]["log10_s_prime"] for n in rows]
    m = r.line(rf"^Pearson r\(log10 P_before, log10 S_prime\) = ({NUMBER}) \(p = ({NUMBER})\)")
    assert float(m[1]) == pytest.approx(stats.pearsonr(x, y)[0], abs=6e-4)
    assert float(m[2]) == pytest.approx(stats.pearsonr(x, y)[1], rel=0.05, abs=1e-3)
    rho = float(r.line(rf"^Spearman rho = ({NUMBER})")[1])
    assert rho == pytest.approx(stats.spearmanr(x, y)[0], abs=6e-4)
    # Sun et al.: the least expected keyword is primed most
    assert min(rows, key=lambda n: rows[n][0]) == max(rows, key=lambda n: rows[n][2]) == "pearl-vermilion"
    assert rows["pearl-vermilion"][2] > 3  # above the example's S_prime cut-off of 1e3
    assert rows["pearl-vermilion"][4] < rows["pearl-vermilion"][2]  # IgnoreTopK dilutes the priming
    # the IgnoreTopK summary lines: medians recomputed from the per-fact values
    med = {k: statistics.median(rows[n][i] for n in rows) for k, i in (("prime", 2), ("mem", 1), ("prime_topk", 4),
                                                                     ("mem_topk", 3))}
    m = r.line(rf"^  median log10 S_prime ({NUMBER}) -> ({NUMBER}) .*priming fell for (\d+) of (\d+) facts")
    assert (float(m[1]), float(m[2])) == pytest.approx((med["prime"], med["prime_topk"]), abs=6e-3)
    fell = sum(rows[n][4] < rows[n][2] for n in rows)
    assert (int(m[3]), int(m[4])) == (fell, len(rows)) and fell > len(rows) / 2  # priming falls for most facts
    m = r.line(rf"^  median log10 S_mem   ({NUMBER}) -> ({NUMBER})")
    assert (float(m[1]), float(m[2])) == pytest.approx((med["mem"], med["mem_topk"]), abs=6e-3)
    # the README's "median log10 S_mem held": within half a decade, while the median S_mem itself
    # is several decades (memorization of the median fact survives the dilution)
    assert abs(med["mem_topk"] - med["mem"]) <= 0.5 and med["mem"] > 2


# --- examples/rl_format_collapse.py ------------------------------------------------------------------


def test_rl_format_collapse(examples: Examples) -> None:
    r = examples.get("rl_format_collapse")
    table = {
        m[1]: (int(m[2]), int(m[3]), float(m[4]), float(m[5]), float(m[6]))
        for m in r.lines(
            rf"^(GRPO \+ KL|GRPO|no reward)\s*\|\s*(-?\d+),\s*(-?\d+)\s*\|\s*({NUMBER})\s*\|\s*({NUMBER}) -> ({NUMBER})"
        )
    }
    assert list(table) == ["GRPO", "GRPO + KL", "no reward"]
    rollout, exact, share, h_first, h_last = table["GRPO"]
    assert rollout >= 0 and exact >= 0 and share >= 0.95 and h_last < h_first / 2  # Echo Chamber: it collapses
    kl_rollout, kl_exact = table["GRPO + KL"][:2]
    # the KL penalty delays the collapse (the README's claim): later, or not within the run (-1)
    def when(step: int) -> float:
        return math.inf if step < 0 else step

    assert exact < when(kl_exact) and rollout < when(kl_rollout)
    assert table["no reward"][:2] == (-1, -1) and table["no reward"][3] == table["no reward"][4]
    assert len({row[3] for row in table.values()}) == 1  # every run starts from the same pretrained policy
    # the collapse warning printed live names the same step as the table
    grpo = r.stdout.split("== GRPO + KL", 1)[0]
    m = re.search(r"! FormatProbe\[exact\]: Format collapse at step (\d+): format 'equals'", grpo)
    assert m is not None and int(m[1]) == exact


# --- examples/stage_transfer.py ----------------------------------------------------------------------


def test_stage_transfer(examples: Examples) -> None:
    r = examples.get("stage_transfer")
    out = examples.tmp / "stage_transfer"
    losses = {
        m[1]: (float(m[2]), float(m[3])) for m in r.lines(rf"^\s*(\S+): weights .* \| loss ({NUMBER}) -> ({NUMBER})")
    }
    assert list(losses) == ["colour-heavy", "balanced", "sound-heavy"]
    assert all(end < start / 2 for start, end in losses.values())
    # the "Runs" table of `probes compare`: every cell against the raw end-of-stage reading in the log
    bar = "[│|]"
    cells = list(
        r.lines(
            rf"^{bar} (\S+)\s+{bar} (pretrain|sft)\s+{bar}\s+(\d+) {bar}\s+({NUMBER}) {bar}\s+({NUMBER})"
            rf" {bar}\s+({NUMBER}) {bar}"
        )
    )
    assert len(cells) == 6
    for m in cells:
        run = open_run(out / m[1])
        source = f"bench_{m[2]}"
        steps, end = run.read(f"{source}/end_of_stage")
        k = int(np.nonzero(end)[0][-1])
        assert int(m[3]) == int(steps[k]) == (60 if m[2] == "pretrain" else 15)
        for col, metric in ((4, "accuracy"), (5, "confidence"), (6, "ece")):
            assert float(m[col]) == pytest.approx(float(run.read(f"{source}/{metric}")[1][k].mean()), abs=6e-4)
    fit = r.line(rf"^fit over (\d+) facts \((\d+) never seen, excluded\): ({NUMBER}) per decade")
    assert int(fit[1]) + int(fit[2]) == 3 * 28  # every fact of every mixture
    assert float(fit[3]) > 0  # facts seen more often are answered better
    ifd = [float(m[1]) for m in r.lines(rf"^{bar}\s+\S+ {bar}\s+{NUMBER} -> ({NUMBER}) {bar}")]
    assert len(ifd) == 3 and all(0 < x < 3 for x in ifd)
