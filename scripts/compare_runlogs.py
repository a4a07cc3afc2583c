"""Capture, and compare value for value, the run logs of ``probes demo --quick`` and of every example.

The proof for a restructuring that must not change behaviour: capture from the old code, capture
from the new code, compare::

    # old code, from a git worktree of the baseline commit (the venv's editable install is a plain
    # .pth path, so the PYTHONPATH that --src sets takes precedence over it)
    git worktree add /work/baseline <commit>
    .venv/bin/python scripts/compare_runlogs.py capture /work/runlog_base --src /work/baseline/src \\
        --repo /work/baseline
    # new code
    .venv/bin/python scripts/compare_runlogs.py capture /work/runlog_new --src src --repo .
    # read both with one reader (the old one: the instrument does not change with the code under test)
    PYTHONPATH=/work/baseline/src .venv/bin/python scripts/compare_runlogs.py compare /work/runlog_base \\
        /work/runlog_new

``capture OUT`` runs every job of :data:`JOBS` in a subprocess with one torch thread and fixed seeds
(:func:`pinned_env`), each with its working directory, outputs and relative paths arranged so that
nothing captured depends on where ``OUT``, ``--src`` or ``--repo`` lie:

* ``OUT/<job>/...``: the run logs (and JSON / CSV files) the job wrote;
* ``OUT/<job>.stdout``: what it printed (``OUT`` itself, absolute, is replaced by ``<OUT>``);
  ``OUT/<job>.stderr`` is kept for reading but never compared (warnings, tracebacks);
* ``OUT/<job>.result``: exit status (``passed`` / ``failed (exit N)`` / ``timed out``); for the
  pytest file this is all that is compared (its report is kept as ``OUT/<job>.log``);
* ``OUT/capture.json``: commands, exit codes, wall times, the commit, the probes that was imported.

``compare A B`` prints one line per difference and a summary; exit 1 on any difference, 0 when
equal, 2 when a directory is not a capture. What it compares and the short list of what it
ignores (wall-clock and host facts only) are at the top of the comparison section below.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_TOKEN = "<OUT>"

# ================================================================================== capture


@dataclass(frozen=True)
class Job:
    """One command of the capture.

    ``argv`` follows the interpreter; ``{repo}`` is replaced by the repository. The command runs in
    ``OUT`` (``cwd="out"``, so relative output paths land under ``OUT/<name>`` and printed paths are
    relative) or in the repository (``cwd="repo"``, for pytest, whose rootdir and ini are there).
    """

    name: str
    argv: tuple[str, ...]
    cwd: str = "out"
    pytest: bool = False  # record pass / fail only
    note: str = ""


# The smallest setting each example's argparse offers that still runs its whole code path: its own
# CI form (--quick / --smoke, as tests/test_examples.py, tests/test_studies.py and
# tests/test_output_space_example.py run them), with every output option pointed under OUT/<name>
# and --threads 1 where the script has the option (the rest call torch.set_num_threads(1)
# themselves). Longest first, so that a --jobs 2 capture ends early.
JOBS: tuple[Job, ...] = (
    Job(
        "demo",
        ("-m", "probes", "demo", "--quick", "--no-live", "--out", "demo"),
        note="two run logs, demo/lm and demo/rl (DemoConfig.threads is 1; --no-live: plain console lines)",
    ),
    Job(
        "rl_format_collapse",
        ("{repo}/examples/rl_format_collapse.py", "--quick", "--threads", "1"),
        note="no run log (a print sink): stdout only",
    ),
    Job(
        "priming_study",
        ("{repo}/examples/priming_study.py", "--quick", "--bootstrap", "50", "--json", "priming_study/result.json"),
        note="no run log: stdout and its JSON (the --bootstrap of tests/test_studies.py)",
    ),
    Job(
        "stage_transfer",
        ("{repo}/examples/stage_transfer.py", "--quick", "--out", "stage_transfer", "--threads", "1"),
        note="one run log per mixture",
    ),
    Job(
        "output_space",
        ("{repo}/examples/output_space.py", "--quick", "--out", "output_space"),
        note="run logs OUT/output_space/{pretrain,16/<cond>}/seed<k>",
    ),
    Job(
        "rl_format_study",
        ("{repo}/examples/rl_format_study.py", "--quick", "--steps", "20", "--json", "rl_format_study/rows.json"),
        note="no run log: stdout and its JSON (the --steps of tests/test_studies.py)",
    ),
    Job(
        "sft_hf_gpt2",
        ("{repo}/examples/sft_hf_gpt2.py", "--quick", "--out", "sft_hf_gpt2/run", "--threads", "1"),
        note="one run log (needs transformers and tokenizers)",
    ),
    Job(
        "priming_experiment",
        (
            "{repo}/examples/priming_experiment.py",
            *("--smoke", "--threads", "1", "--json", "priming_experiment/figures.json"),
        ),
        note="no run log: stdout and its JSON",
    ),
    Job(
        "keyword_probe_quickstart",
        ("{repo}/examples/keyword_probe_quickstart.py", "--quick", "--threads", "1"),
        note="no run log (reads the probe's history): stdout only",
    ),
    Job(
        "replay_and_plot",
        ("{repo}/examples/replay_and_plot.py", "--quick", "--out", "replay_and_plot", "--threads", "1"),
        note="a run log (replay_and_plot/run), its CSV export, a plot.png (not compared)",
    ),
    Job(
        "test_training_loop",
        ("-m", "pytest", "{repo}/examples/test_training_loop.py", "-q", "-p", "no:cacheprovider"),
        cwd="repo",
        pytest=True,
        note="a pytest file: pass / fail only",
    ),
)

# Outputs an example asks for by a relative path must have their folder ready when the example does
# not create it (the --json writers open the file directly).
_JSON_DIRS = ("priming_study", "rl_format_study", "priming_experiment")


# The environment every job runs under, besides PYTHONPATH=SRC: one thread for every numeric library,
# a fixed hash seed, no GPU, a fixed console width and no colour. The scripts seed torch, numpy and
# random themselves (seed_everything / their --seed defaults), and set torch's threads to 1.
PINNED_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",  # torch's intra-op threads default to this (and the scripts set 1)
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",  # numpy / scipy BLAS
    "RAYON_NUM_THREADS": "1",  # Hugging Face tokenizers (the BPE trained in sft_hf_gpt2)
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",  # iteration order of sets of str: the same in every capture
    "CUDA_VISIBLE_DEVICES": "",  # CPU only
    "COLUMNS": "200",  # Rich lays out tables and wraps lines (demo, stage_transfer) to this width
    "LINES": "50",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "TZ": "UTC",
    "PYTHONUNBUFFERED": "1",
}


def pinned_env(src: Path) -> dict[str, str]:
    """This process's environment with :data:`PINNED_ENV` and ``PYTHONPATH=src`` (nothing else on it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTHONPATH", "PYTHONSTARTUP")}
    return {**env, **PINNED_ENV, "PYTHONPATH": str(src)}


def probe_import(python: str, env: Mapping[str, str]) -> dict[str, str]:
    """Which probes (file), torch and numpy the jobs will import."""
    code = (
        "import json, probes, torch, numpy;"
        "print(json.dumps({'probes': probes.__file__, 'torch': torch.__version__, 'numpy': numpy.__version__,"
        " 'torch_threads': torch.get_num_threads()}))"
    )
    proc = subprocess.run([python, "-c", code], env=dict(env), cwd="/", capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"capture: {python} cannot import probes with PYTHONPATH={env['PYTHONPATH']}:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def git_facts(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain", "--", "src", "examples")}


def run_job(job: Job, out: Path, python: str, repo: Path, env: Mapping[str, str], timeout: float) -> dict[str, Any]:
    argv = [python, *(a.replace("{repo}", str(repo)) for a in job.argv)]
    cwd = out if job.cwd == "out" else repo
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
        )
        rc: Optional[int] = proc.returncode
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc = None
        stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    seconds = time.perf_counter() - start
    result = "timed out" if rc is None else "passed" if rc == 0 else f"failed (exit {rc})"
    (out / f"{job.name}.result").write_text(result + "\n")
    (out / f"{job.name}.stderr").write_text(stderr)
    if job.pytest:  # pytest's report holds durations and temp paths: kept to read, pass / fail is compared
        (out / f"{job.name}.log").write_text(stdout)
    else:
        (out / f"{job.name}.stdout").write_text(stdout.replace(str(out), OUT_TOKEN))
    return {"name": job.name, "argv": argv, "cwd": str(cwd), "result": result, "seconds": round(seconds, 1)}


def capture(out: Path, python: str, src: Path, repo: Path, only: Sequence[str], timeout: float) -> int:
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        print(f"capture: {out} is not empty; pass a new directory", file=sys.stderr)
        return 2
    unknown = sorted(set(only) - {j.name for j in JOBS})
    if unknown:
        print(f"capture: unknown job(s) {unknown}; known: {[j.name for j in JOBS]}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    env = pinned_env(src.resolve())
    imported = probe_import(python, env)
    if not Path(imported["probes"]).resolve().is_relative_to(src.resolve()):
        print(f"capture: probes imports from {imported['probes']}, not from --src {src}", file=sys.stderr)
        return 2
    for d in _JSON_DIRS:
        (out / d).mkdir()
    manifest: dict[str, Any] = {
        "repo": str(repo.resolve()),
        "src": str(src.resolve()),
        "git": git_facts(repo),
        "python": python,
        "imported": imported,
        "env": {**PINNED_ENV, "PYTHONPATH": env["PYTHONPATH"]},
        "jobs": [],
    }
    print(
        f"capture into {out}: probes from {imported['probes']}, commit {manifest['git']['commit'][:12]}"
        f"{' (src or examples modified)' if manifest['git']['dirty'] else ''}",
        flush=True,
    )
    started = time.perf_counter()
    for job in JOBS:
        if only and job.name not in only:
            continue
        done = run_job(job, out, python, repo.resolve(), env, timeout)
        manifest["jobs"].append(done)
        (out / "capture.json").write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"  {job.name:26s} {done['result']:18s} {done['seconds']:7.1f} s", flush=True)
    failed = [j["name"] for j in manifest["jobs"] if j["result"] != "passed"]
    print(
        f"captured {len(manifest['jobs'])} jobs in {time.perf_counter() - started:.0f} s"
        + (f"; not passed: {', '.join(failed)} (see OUT/<job>.stderr)" if failed else "")
    )
    return 1 if failed else 0


# =============================================================================== comparison
#
# Compared, value for value, for every run directory (found through the library's reader) and its
# counterpart at the same relative path: the run's status; its run information; its timelines
# (ids, parents, fork steps, record counts, step ranges, statuses); its sources, in order; each
# source's definition (``describe``, as JSON); the steps and epochs of every record; every metric's
# name, stored dtype, shape and values (exact: equal bits, except that NaN equals NaN in the same
# place, whatever its payload). Besides run logs: stdout line by line (after the masks below), JSON
# files value for value, CSV files cell by cell, and every job's result.
#
# Ignored, and only these (each wall-clock or host specific):

IGNORED_RUN_INFO: dict[str, str] = {
    "host": "host name of the writing machine",
    "pid": "process id of the writer",
    "started": "wall-clock time the writer opened (time.time())",
}
IGNORED_RECORD_FIELDS: dict[str, str] = {  # never read: RunReader.times() and Record.extra["time"]
    "times": "the wall-clock time each record reached the writer (__time__ in every shard)",
}
IGNORED_READER_INFO: dict[str, str] = {
    "path": "where the capture lies",
    "updated": "wall-clock time of the newest shard's flush (the shard metadata's 'created')",
    "n_shards": "how many shards a run is cut into follows the writer's flush_every_s=30 s timer, i.e. wall time;"
    " the records they hold are compared one by one",
}
IGNORED_TIMELINE_FIELDS: dict[str, str] = {
    "shards": "shards per timeline: flush timing, as n_shards",
}
IGNORED_JSON_KEYS: dict[str, str] = {
    "seconds": "wall time, at any depth: priming_experiment and priming_study (the study's, and per row in"
    " priming_study's rows[]), rl_format_study (runs[].seconds)",
}
IGNORED_CSV_COLUMNS: dict[str, str] = {
    "time": "the records' wall-clock times, as exported by `probes export --csv` (replay_and_plot)",
}
# Stdout masks: (job, pattern, replacement); job "*" applies to every job. Each replaces a wall-clock
# or host figure by a placeholder so that the rest of its line is still compared; absolute paths
# under OUT were made '<OUT>' at capture (and the jobs are given relative output paths anyway).
STDOUT_MASKS: tuple[tuple[str, str, str], ...] = (
    # LiveConsole's plain lines and the replay dashboard (demo, sft_hf_gpt2, replay_and_plot):
    # "probes step 100 epoch 0 steps/s 17.9 elapsed 0:00:05 | ...": throughput and elapsed time
    # (the spaces around them too: a dashboard header may pad them to the figures' widths)
    ("*", r"steps/s +[\d.]+ +elapsed +[\d:]+", "steps/s <rate> elapsed <t>"),
    # "done in 49 s. Run logs: demo/lm and demo/rl. Next:"
    ("demo", r"^done in \d+ s\.", "done in <s> s."),
    # "pretrained 250 steps, final loss 1.234 (5 s)": the pretraining wall time
    ("priming_experiment", r"\(\d+ s\)$", "(<s> s)"),
    # "total time 14 s on 1 thread(s)"
    ("priming_experiment", r"^total time \d+ s ", "total time <s> s "),
    # "pretrained on the study corpus, final loss 1.234 (5 s); ..." and the closing "(...; 40 s)"
    ("priming_study", r"\(\d+ s\);", "(<s> s);"),
    ("priming_study", r"; \d+ s\)$", "; <s> s)"),
    # the last column of the result table, "| 12.3": seconds per run
    ("rl_format_collapse", r"\| *\d+\.\d$", "| <s>"),
    # "  equal_accuracy     small seed 0: share '=' 0.718 -> 0.712, collapse step -1 '', 1 s" and the
    # closing "(... collapse: rollout share >= 0.95 for 3 records; 9 s)"
    ("rl_format_study", r", \d+ s$", ", <s> s"),
    ("rl_format_study", r"; \d+ s\)$", "; <s> s)"),
    # "pretrained 200 steps on plain reviews: loss ... (2.3 s; GPT-2 ..." and "SFT: 120 steps in 1.7 s, ..."
    ("sft_hf_gpt2", r"\(\d+\.\d s;", "(<s> s;"),
    ("sft_hf_gpt2", r" steps in \d+\.\d s,", " steps in <s> s,"),
    # "  colour-heavy: weights 0.70, 0.15, 0.15 | loss 5.54 -> 1.55 | 3 s" and "total 10 s; run logs in ..."
    ("stage_transfer", r"\| \d+ s$", "| <s> s"),
    ("stage_transfer", r"^total \d+ s;", "total <s> s;"),
    # "seed 0 done (4 s)" and "total 8 s; run logs in output_space"
    ("output_space", r"^seed (\d+) done \(\d+ s\)$", r"seed \1 done (<s> s)"),
    ("output_space", r"^total \d+ s;", "total <s> s;"),
    # the `probes summary` block: "status   finished   timeline 0 of 1   shards 1   last step 60"
    # (shards: flush timing, see IGNORED_READER_INFO), "started  2026-12-01 04:58:56   updated ..."
    # (wall clock) and "info     ... host=vm  pid=12039  ..." (host facts)
    ("replay_and_plot", r"(   shards) \d+( +last step)", r"\1 <n>\2"),
    ("replay_and_plot", r"^started +\S+ \S+ +updated +\S+ \S+$", "started <time> updated <time>"),
    ("replay_and_plot", r"  host=\S+  pid=\d+  ", "  host=<host>  pid=<pid>  "),
)


@dataclass
class Report:
    """Differences found (one printed line each) and what was compared."""

    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def diff(self, where: str, what: str) -> None:
        self.lines.append(f"DIFF {where}: {what}")
        print(self.lines[-1], flush=True)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def _open_run(path: Path) -> Any:
    try:
        from probes.runlog import open_run
    except ImportError:  # a layout that moved the package keeps the public top-level name
        from probes import open_run
    return open_run(path)


def find_runs(root: Path) -> list[str]:
    """Run directories below ``root`` (relative, sorted): those the library's reader finds shards in."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        d = Path(dirpath)
        if d == root:
            continue
        try:
            n_shards = _open_run(d).info["n_shards"]
        except Exception:  # unreadable (corrupt shard...): kept, so that comparing it reports why
            n_shards = 1
        if n_shards:
            found.append(d.relative_to(root).as_posix())
    return found


def _fmt_value(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        return repr(float(x)) if not math.isnan(x) else "nan"
    if isinstance(x, np.generic):
        return repr(x.item())
    return repr(x)


_NONE: Mapping[str, str] = {}


def _json_diffs(a: Any, b: Any, path: str = "", ignored: Mapping[str, str] = _NONE) -> Iterator[str]:
    """Differences between two JSON values, one per leaf (``path: a != b``); NaN equals NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(dict.fromkeys([*a, *b])):
            if k in ignored:
                continue
            where = f"{path}.{k}" if path else str(k)
            if k not in b:
                yield f"{where}: only in A ({_short(a[k])})"
            elif k not in a:
                yield f"{where}: only in B ({_short(b[k])})"
            else:
                yield from _json_diffs(a[k], b[k], where, ignored)
        if list(k for k in a if k in b) != list(k for k in b if k in a):
            yield f"{path or '<root>'}: the same keys in another order"
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path or '<root>'}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _json_diffs(x, y, f"{path}[{i}]", ignored)
    elif type(a) is not type(b) or not _same_scalar(a, b):
        yield f"{path or '<root>'}: {_short(a)} != {_short(b)}"


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def _short(x: Any, n: int = 120) -> str:
    text = json.dumps(x, sort_keys=False, default=str) if not isinstance(x, float) else _fmt_value(x)
    return text if len(text) <= n else text[: n - 3] + "..."


def equal_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise exact equality of two arrays of one dtype and shape: equal values with equal sign
    (0.0 and -0.0 differ) for floats, NaN equal to NaN whatever its payload; ``==`` otherwise."""
    if a.dtype.kind in "fc":
        same = (a == b) & (np.signbit(a.real) == np.signbit(b.real))
        return same | (np.isnan(a) & np.isnan(b))
    return np.asarray(a == b)


def compare_arrays(where: str, a: np.ndarray, b: np.ndarray, steps: np.ndarray, report: Report) -> None:
    """One line for the first differing element of ``a`` and ``b`` (rows are ``steps``), if any."""
    report.count("values", int(a.size))
    eq = equal_mask(a, b)
    if eq.all():
        return
    bad = np.argwhere(~eq)
    first = tuple(int(i) for i in bad[0])
    report.diff(
        f"{where} step={int(steps[first[0]])}",
        f"index {list(first[1:])} (row {first[0]}): A={_fmt_value(a[first])} B={_fmt_value(b[first])}"
        f" ({len(bad)} of {a.size} values differ, at {len(np.unique(bad[:, 0]))} steps)",
    )


def _first_dtypes(run: Any, source: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Stored dtype (torch's name: bfloat16 stays bfloat16) and per-record shape of every metric."""
    records = run.records(source, chunk=1)
    try:
        first = next(records)
    except StopIteration:
        return {}
    finally:
        records.close()
    return {m: (str(t.dtype).replace("torch.", ""), tuple(t.shape)) for m, t in first.tensors.items()}


def compare_run(rel: str, a_root: Path, b_root: Path, report: Report) -> None:
    report.count("runs")
    try:
        a, b = _open_run(a_root / rel), _open_run(b_root / rel)
    except Exception as e:  # any reader error (corrupt shard, newer schema) is a difference
        report.diff(f"run={rel}", f"cannot be opened: {e}")
        return
    where = f"run={rel}"
    if a.status != b.status:
        report.diff(where, f"status A={a.status!r} B={b.status!r}")
    ia, ib = a.info, b.info
    for line in _json_diffs(ia["run"], ib["run"], "run_info", IGNORED_RUN_INFO):
        report.diff(where, line)
    kept = {k: v for k, v in ia.items() if k not in IGNORED_READER_INFO and k != "run"}
    for line in _json_diffs(kept, {k: v for k, v in ib.items() if k not in IGNORED_READER_INFO and k != "run"}, "info"):
        report.diff(where, line)
    for line in _json_diffs(a.timelines, b.timelines, "timelines", IGNORED_TIMELINE_FIELDS):
        report.diff(where, line)
    sa, sb = a.sources(), b.sources()
    if sa != sb:
        report.diff(where, f"sources A={sa} B={sb}")
    for source in [s for s in sa if s in sb]:
        compare_source(where, source, a, b, report)


def compare_source(run_where: str, source: str, a: Any, b: Any, report: Report) -> None:
    from probes.runlog import RunLogError

    report.count("sources")
    where = f"{run_where} source={source}"
    for line in _json_diffs(a.describe(source), b.describe(source), "describe"):
        report.diff(where, line)
    steps_a, steps_b = a.steps(source), b.steps(source)
    report.count("records", len(steps_a))
    if np.array_equal(steps_a, steps_b):
        rows_a = rows_b = slice(None)
        steps = steps_a
    else:
        only_a, only_b = np.setdiff1d(steps_a, steps_b), np.setdiff1d(steps_b, steps_a)
        report.diff(
            where,
            f"steps differ: {len(steps_a)} in A, {len(steps_b)} in B;"
            f" only in A {_head(only_a)}; only in B {_head(only_b)}",
        )
        steps = np.intersect1d(steps_a, steps_b)  # the values of the common steps are still compared
        rows_a, rows_b = np.searchsorted(steps_a, steps), np.searchsorted(steps_b, steps)
    epochs_a, epochs_b = a.epochs(source)[rows_a], b.epochs(source)[rows_b]
    compare_arrays(f"{where} epochs", epochs_a, epochs_b, steps, report)
    ma, mb = a.metrics(f"{source}/"), b.metrics(f"{source}/")
    if ma != mb:
        report.diff(where, f"metrics A={ma} B={mb}")
    types_a, types_b = _first_dtypes(a, source), _first_dtypes(b, source)
    for name in [m for m in ma if m in mb]:
        metric = name.split("/", 1)[1]
        tw = f"{where} tensor={metric}"
        report.count("tensors")
        if types_a.get(metric) != types_b.get(metric):
            report.diff(tw, f"dtype, shape A={types_a.get(metric)} B={types_b.get(metric)}")
            continue
        try:
            va, vb = a.read(name)[1][rows_a], b.read(name)[1][rows_b]
        except RunLogError as e:
            report.diff(tw, f"cannot be read: {e}")
            continue
        if va.dtype != vb.dtype or va.shape != vb.shape:
            report.diff(tw, f"read as {va.dtype}{list(va.shape)} in A, {vb.dtype}{list(vb.shape)} in B")
            continue
        compare_arrays(tw, va, vb, steps, report)


def _head(steps: np.ndarray, n: int = 8) -> str:
    items = [int(s) for s in steps[:n]]
    return f"{items}{' ...' if len(steps) > n else ''}"


def masked_lines(job: str, text: str) -> list[str]:
    masks = [(re.compile(p), r) for j, p, r in STDOUT_MASKS if j in (job, "*")]
    lines = []
    for line in text.splitlines():
        for pattern, repl in masks:
            line = pattern.sub(repl, line)
        lines.append(line.rstrip())
    return lines


def compare_text(rel: str, a: Path, b: Path, report: Report) -> None:
    job = Path(rel).name.split(".", 1)[0]
    la, lb = masked_lines(job, a.read_text()), masked_lines(job, b.read_text())
    report.count("text files")
    report.count("lines", len(la))
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            report.diff(f"{rel} line {i + 1}", f"A={x!r} B={y!r}")
    if len(la) != len(lb):
        longer, which = (la, "A") if len(la) > len(lb) else (lb, "B")
        extra = longer[min(len(la), len(lb))]
        report.diff(rel, f"{len(la)} lines in A, {len(lb)} in B; first extra line ({which}): {extra!r}")


def compare_json(rel: str, a: Path, b: Path, report: Report) -> None:
    report.count("json files")
    for line in _json_diffs(json.loads(a.read_text()), json.loads(b.read_text()), "", IGNORED_JSON_KEYS):
        report.diff(rel, line)


def compare_csv(rel: str, a: Path, b: Path, report: Report) -> None:
    """Cells as text: `probes export` writes floats as the shortest text that parses back exactly."""
    report.count("csv files")
    ra, rb = (list(csv.reader(io.StringIO(p.read_text()))) for p in (a, b))
    if not ra or not rb or ra[0] != rb[0]:
        report.diff(rel, f"header A={ra[:1]} B={rb[:1]}")
        return
    keep = [i for i, col in enumerate(ra[0]) if col not in IGNORED_CSV_COLUMNS]
    if len(ra) != len(rb):
        report.diff(rel, f"{len(ra) - 1} rows in A, {len(rb) - 1} in B")
    for n, (x, y) in enumerate(zip(ra[1:], rb[1:]), start=1):
        cells = [(ra[0][i], x[i], y[i]) for i in keep if x[i] != y[i]]
        if cells:
            col, u, v = cells[0]
            report.diff(f"{rel} row {n}", f"column {col!r}: A={u!r} B={v!r} ({len(cells)} cells differ in this row)")


def compare_manifests(a: Path, b: Path, report: Report) -> None:
    ja, jb = ({j["name"]: j for j in json.loads((p / "capture.json").read_text())["jobs"]} for p in (a, b))
    for name in dict.fromkeys([*ja, *jb]):
        if name not in ja or name not in jb:
            report.diff(f"job={name}", f"captured only in {'A' if name in ja else 'B'}")


def files_below(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def compare(a_root: Path, b_root: Path) -> int:
    for root in (a_root, b_root):
        if not (root / "capture.json").is_file():
            print(f"compare: {root} holds no capture.json; pass a directory written by `capture`", file=sys.stderr)
            return 2
    import probes

    report = Report()
    compare_manifests(a_root, b_root, report)
    runs_a, runs_b = find_runs(a_root), find_runs(b_root)
    for rel in sorted(set(runs_a) ^ set(runs_b)):
        report.diff(f"run={rel}", f"only in {'A' if rel in runs_a else 'B'}")
    for rel in [r for r in runs_a if r in runs_b]:
        compare_run(rel, a_root, b_root, report)

    in_run = tuple(f"{r}/" for r in {*runs_a, *runs_b})
    fa = {k: v for k, v in files_below(a_root).items() if not k.startswith(in_run)}
    fb = {k: v for k, v in files_below(b_root).items() if not k.startswith(in_run)}
    skipped: list[str] = []
    for rel in sorted(set(fa) | set(fb)):
        if rel == "capture.json" or rel.endswith((".stderr", ".log")):
            continue  # provenance, warnings, pytest's report (durations, temp paths): to read, not compared
        if rel not in fa or rel not in fb:
            report.diff(rel, f"only in {'A' if rel in fa else 'B'}")
        elif rel.endswith((".stdout", ".result")):
            compare_text(rel, fa[rel], fb[rel], report)
        elif rel.endswith(".json"):
            compare_json(rel, fa[rel], fb[rel], report)
        elif rel.endswith(".csv"):
            compare_csv(rel, fa[rel], fb[rel], report)
        else:
            skipped.append(rel)
    c = report.counts
    print(
        f"{'EQUAL' if not report.lines else 'DIFFERENT'}: {len(report.lines)} difference(s);"
        f" compared {c.get('runs', 0)} runs, {c.get('sources', 0)} sources, {c.get('records', 0)} records,"
        f" {c.get('tensors', 0)} tensors, {c.get('values', 0)} values; {c.get('text files', 0)} stdout/result files"
        f" ({c.get('lines', 0)} lines), {c.get('json files', 0)} JSON, {c.get('csv files', 0)} CSV files"
        f"{'; not compared: ' + ', '.join(skipped) if skipped else ''} (read with {probes.__file__})"
    )
    return 1 if report.lines else 0


# ===================================================================================== main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="run the demo and every example, keep their run logs and output")
    cap.add_argument("out", type=Path, help="a new (or empty) directory for the capture")
    cap.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    cap.add_argument(
        "--src", type=Path, default=None, help="the code under test, first on PYTHONPATH (default: REPO/src)"
    )
    cap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose examples/ run (default: this one)")
    cap.add_argument("--only", nargs="+", default=(), metavar="JOB", help=f"a subset of {[j.name for j in JOBS]}")
    cap.add_argument("--timeout", type=float, default=900.0, help="seconds per job (default 900)")
    cmp_ = sub.add_parser("compare", help="compare two captures; exit 1 on any difference")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.command == "capture":
        src = args.src if args.src is not None else args.repo / "src"
        return capture(args.out, args.python, src, args.repo, args.only, args.timeout)
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
