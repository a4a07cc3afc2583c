"""Mutation check: apply small deliberate faults to a copy of the source, one at a time, and run the
tests that should catch each; fail if any fault survives.

Every mutation is applied to a fresh copy of ``src/`` in a temporary directory, which is put first
on ``PYTHONPATH`` for the test run (the package is installed in editable mode through a path
``.pth`` entry, which ``PYTHONPATH`` precedes), so the working tree is never modified. Tests come
from the working tree and run from the repository root, so subprocesses they start (examples,
distributed ranks, the CLI) import the mutated copy too.

Usage::

    python scripts/mutations.py                 # every mutation against its quick killing tests
    python scripts/mutations.py --full          # ... against the whole test files named for each
    python scripts/mutations.py --only fmt_num_sign rng_not_restored
    python scripts/mutations.py --list

Exit status 0 when every mutation is killed, 1 when one survives, 2 when a mutation no longer
applies (its pattern is gone from the source: update the pattern) or the unmutated tests fail.
It prints one row per mutation: the fault, the test that killed it, and the seconds it took.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


@dataclass(frozen=True)
class Mutation:
    """One deliberate fault.

    Attributes:
        name: short identifier.
        fault: the fault in words.
        path: file under ``src/probes``.
        edits: ``(regex, replacement)`` pairs applied in order; each regex must match at least once
            (exactly ``count`` times when given as a third element).
        quick: pytest node ids that must kill it (the CI form).
        full: further test paths run by ``--full`` (after the quick ones).
    """

    name: str
    fault: str
    path: str
    edits: tuple[tuple[str, str] | tuple[str, str, int], ...]
    quick: tuple[str, ...]
    full: tuple[str, ...] = field(default_factory=tuple)


MUTATIONS: tuple[Mutation, ...] = (
    # --- what users read: the demo's results table, the CLI's numbers, the dashboard -----------
    Mutation(
        "demo_p_before_x10",
        "the demo table prints P before x10",
        "demos/main_job.py",
        ((r"float\(last\['p_before'\]\[i\]\)", "10 * float(last['p_before'][i])", 1),),
        ("tests/test_demo.py::test_report_prints_the_records_it_is_given",),
        ("tests/test_demo.py",),
    ),
    Mutation(
        "demo_s_prime_shows_s_mem",
        "the demo table's S_prime column prints S_mem",
        "demos/main_job.py",
        ((r"float\(last\['s_prime'\]\[i\]\)", "float(last['s_mem'][i])", 1),),
        ("tests/test_demo.py::test_report_prints_the_records_it_is_given",),
        ("tests/test_demo.py",),
    ),
    Mutation(
        "demo_surprising_inverted",
        "the demo table's surprising flag is inverted",
        "demos/main_job.py",
        ((r'"yes" if (bool\(last\["surprising"\]\[i\]\)) else "no"', r'"no" if \1 else "yes"', 1),),
        ("tests/test_demo.py::test_report_prints_the_records_it_is_given",),
        ("tests/test_demo.py",),
    ),
    Mutation(
        "demo_dominant_share_complement",
        "the demo's collapse line prints the dominant share as 1 - x",
        "demos/main_job.py",
        ((r"float\(final\['dominant_share'\]\)", "1 - float(final['dominant_share'])", 1),),
        ("tests/test_demo.py::test_report_prints_the_records_it_is_given",),
        ("tests/test_demo.py",),
    ),
    Mutation(
        "keyword_probability_ignores_by",
        "keyword_probability reads logp_seq whatever `by=` says",
        "keyword/view.py",
        ((r'data\.metric\("logp_seq" if by == "seq" else "logp_first"\)', 'data.metric("logp_seq")', 1),),
        ("tests/testing/test_assertions.py",),
        ("tests/testing",),
    ),
    Mutation(
        "pair_column_wraps",
        "the dashboard's pair names lose no_wrap/ellipsis (they wrap)",
        "keyword/view.py",
        ((r"add_row\(name_cell\(name\),", "add_row(name,", 1),),
        ("tests/console/test_narrow.py",),
        ("tests/console",),
    ),
    Mutation(
        "sample_column_wraps",
        "the dashboard's sample names lose no_wrap/ellipsis (they wrap)",
        "priming/view.py",
        ((r"name_cell\(s\.names\[i\]\)", "s.names[i]", 1),),
        ("tests/console/test_narrow.py",),
        ("tests/console",),
    ),
    Mutation(
        "fmt_num_sign",
        "fmt_num drops the sign",
        "console/numbers.py",
        ((r"\n        x = float\(x\)\n", "\n        x = abs(float(x))\n", 1),),
        ("tests/test_cli.py::test_fmt_num_hand_written",),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "summary_min_max_swapped",
        "`probes summary` prints each metric's max in the min column and the min in the max column",
        "cli/summary.py",
        ((r'_at\(m\.get\("min"\)\), _at\(m\.get\("max"\)\)', '_at(m.get("max")), _at(m.get("min"))', 1),),
        ("tests/test_cli.py::test_summary_metric_tables_match_the_log",),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "replay_min_is_max",
        "`probes replay` prints the largest log10 p_first as the minimum",
        "keyword/view.py",
        ((r'f"min \{fmt_num\(float\(np\.nanmin\(lp\)\)', 'f"min {fmt_num(float(np.nanmax(lp))', 1),),
        ("tests/test_cli.py::test_replay_lines_match_the_log",),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "compare_p_value_of_r",
        "`probes compare` prints r where the p-value belongs",
        "cli/compare.py",
        ((r'f" p=\{c\.p_value:\.2g\}"', 'f" p={abs(c.r):.2g}"', 1),),
        ("tests/test_compare_cells.py",),
        ("tests/analysis/test_compare_command.py",),
    ),
    Mutation(
        "keyword_learned_ignores_by",
        "the KeywordLearned expectation checks the chained probability whatever `by=` says",
        "keyword/view.py",
        ((r"min_prob=self\.min_prob, by=self\.by\)", "min_prob=self.min_prob)", 1),),
        ("tests/testing/test_assertions.py",),
        ("tests/testing",),
    ),
    # --- distributed -----------------------------------------------------------------------------
    Mutation(
        "gather_order_reversed",
        "the all-gathered shards are read in reverse rank order",
        "core/reader.py",
        ((r"gathered\.permute\(1, 0, 2\)", "gathered.flip(0).permute(1, 0, 2)", 1),),
        ("tests/distributed/test_sharding.py",),
        ("tests/test_model_reader_sharded.py",),
    ),
    Mutation(
        "exposures_not_summed",
        "exposure counts are not summed across ranks",
        "priming/probe.py",
        ((r"self\._pending = ctx\.reduce_sum\(self\._pending\)", "pass", 1),),
        ("tests/distributed/test_ddp_parity.py::test_exposures_are_summed_over_ranks",),
        ("tests/distributed/test_ddp_parity.py",),
    ),
    # --- the signals -------------------------------------------------------------------------------
    Mutation(
        "baseline_one_step_late",
        "the priming baseline is the reading after the first exposure, not before it",
        "priming/probe.py",
        ((r"~self\._has_baseline & \(self\._pending > 0\)", "~self._has_baseline & (self._applied > 0)"),),
        ("tests/priming/test_priming_probe.py::test_baseline_is_the_reading_just_before_the_first_exposure",),
        ("tests/priming/test_priming_probe.py",),
    ),
    Mutation(
        "entropy_nats_as_bits",
        "entropy in nats is labelled bits",
        "formats/entropy.py",
        ((r'"entropy_bits": h / math\.log\(2\),', '"entropy_bits": h,', 1),),
        ("tests/formats/test_entropy.py",),
        ("tests/formats",),
    ),
    Mutation(
        "collapse_patience_off_by_one",
        "collapse is declared one record after `patience` qualifying records",
        "formats/collapse.py",
        ((r"collapsed = streak >= criterion\.patience", "collapsed = streak > criterion.patience", 1),),
        ("tests/formats/test_collapse.py",),
        ("tests/formats",),
    ),
    Mutation(
        "temperature_ignored",
        "the sampler draws at temperature 1 whatever the configured temperature",
        "formats/sampling.py",
        ((r"torch\.softmax\(logits / config\.temperature, dim=-1\)", "torch.softmax(logits, dim=-1)", 1),),
        ("tests/test_sampled_reference.py",),
        ("tests/formats/test_sampling.py",),
    ),
    # --- training untouched, logs durable -------------------------------------------------------------
    Mutation(
        "shard_without_fsync_rename",
        "a shard is written in place under its final name, without fsync and rename",
        "runlog/files.py",
        (
            (r"tmp = dirpath / f\"\{fmt\.TMP_PREFIX\}[^\n]*", "tmp = final", 1),
            (r"(def atomic_write[\s\S]*?)_fsync\(fd\)", r"\1pass", 1),  # the file's fsync, not the directory's
            (r"\n(\s+)os\.replace\(tmp, final\)", r"\n\1pass", 1),
        ),
        ("tests/test_shard_atomicity.py",),
        ("tests/runlog/test_runlog_sigkill.py",),
    ),
    Mutation(
        "rng_not_restored",
        "the probe pass does not restore the CPU RNG state",
        "core/isolation.py",
        ((r"\n(\s+)torch\.set_rng_state\(cpu_state\)", r"\n\1pass", 1),),
        ("tests/test_engine.py",),
        ("tests/test_keyword_probe.py",),
    ),
)


def apply(mutation: Mutation, src_root: Path) -> None:
    """Apply ``mutation`` to the package under ``src_root`` (a copy of ``src``)."""
    target = src_root / "probes" / mutation.path
    text = target.read_text()
    for edit in mutation.edits:
        pattern, replacement = edit[0], edit[1]
        n = len(re.findall(pattern, text))
        expected = edit[2] if len(edit) > 2 else None  # type: ignore[misc]
        if n == 0 or (expected is not None and n != expected):
            raise LookupError(
                f"mutation {mutation.name}: pattern {pattern!r} matches {n} times in src/probes/{mutation.path}"
                f" (expected {expected or 'at least 1'}); the source changed, update scripts/mutations.py"
            )
        text = re.sub(pattern, replacement, text)
    target.write_text(text)


def copy_src(dest: Path) -> Path:
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def _env(src_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src_root), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _pytest_args(tests: Sequence[str], stop_first: bool) -> list[str]:
    args = ["-q", "-rfE", "-p", "no:randomly", "-p", "no:cacheprovider"]
    args += ["-x"] if stop_first else []
    return [*args, "-W", "ignore::pytest.PytestUnraisableExceptionWarning", *tests]


def _preimport() -> None:
    """Import the heavy dependencies once, in the parent, so every forked test run starts warm
    (torch and Lightning take about 6 s to import on a small CPU). ``probes`` itself is never
    imported here: each child imports it from its own mutated copy."""
    import lightning.pytorch  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import rich.console  # noqa: F401
    import torch  # noqa: F401


def _run_forked(tests: Sequence[str], src_root: Path, timeout: float, stop_first: bool) -> tuple[int, str]:
    """Run pytest in a forked child whose ``probes`` comes from ``src_root``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            env = _env(src_root)
            os.environ.clear()
            os.environ.update(env)
            os.chdir(ROOT)
            for name in [m for m in sys.modules if m.split(".")[0] in ("probes", "tests")]:
                del sys.modules[name]
            sys.path.insert(0, str(src_root))
            import pytest

            code = int(pytest.main(_pytest_args(tests, stop_first)))
        except BaseException as e:  # report anything, then leave without cleanup
            print(f"mutation check child failed: {e!r}", flush=True)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        import select

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pipe], [], [], min(left, 1.0))
            if ready:
                data = pipe.read(65536)
                if not data:
                    break
                chunks.append(data)
    if timed_out:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode("utf-8", "replace")
    if timed_out:
        return 124, out + f"\n[timed out after {timeout} s]"
    return os.waitstatus_to_exitcode(status), out


def run_tests(
    tests: Sequence[str], src_root: Path, timeout: float, stop_first: bool = True, fork: bool = False
) -> tuple[int, str]:
    """pytest on ``tests`` with ``src_root`` first on the path: in a forked child of this warm
    process (``fork=True``) or in a fresh interpreter."""
    if fork:
        return _run_forked(tests, src_root, timeout, stop_first)
    cmd = [sys.executable, "-m", "pytest", *_pytest_args(tests, stop_first)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(src_root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n[timed out after {timeout} s]"
    return proc.returncode, proc.stdout + proc.stderr


FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # "killed", "survived", "not applied", "error"
    killer: str
    seconds: float
    output: str = ""


def check(mutation: Mutation, *, full: bool = False, timeout: float = 600.0, fork: bool = False) -> Outcome:
    """Apply ``mutation`` to a temporary copy of ``src`` and run its tests there."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mut-{mutation.name}-") as tmp:
        src_root = copy_src(Path(tmp) / "src")
        try:
            apply(mutation, src_root)
        except LookupError as e:
            return Outcome(mutation, "not applied", str(e), time.perf_counter() - start)
        tests = list(mutation.quick) + (list(mutation.full) if full else [])
        rc, out = run_tests(tests, src_root, timeout, fork=fork)
    seconds = time.perf_counter() - start
    failed = FAILED.findall(out)
    if rc == 0:
        return Outcome(mutation, "survived", "-", seconds, out)
    if rc == 1 and failed:
        return Outcome(mutation, "killed", failed[0], seconds, out)
    if rc == 124:
        return Outcome(mutation, "killed", f"timeout ({tests[0]})", seconds, out)
    return Outcome(mutation, "error", f"pytest exit {rc}", seconds, out)


def baseline(mutations: Sequence[Mutation], *, full: bool, timeout: float, fork: bool = False) -> tuple[int, str]:
    """The selected tests on an unmutated copy: they must pass, or a kill would mean nothing."""
    tests: list[str] = []
    for m in mutations:
        for t in list(m.quick) + (list(m.full) if full else []):
            if t not in tests:
                tests.append(t)
    with tempfile.TemporaryDirectory(prefix="mut-baseline-") as tmp:
        src_root = copy_src(Path(tmp) / "src")
        probe = subprocess.run(
            [sys.executable, "-c", "import probes; print(probes.__file__)"],
            env=_env(src_root), cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
        if not probe.startswith(str(src_root)):
            return 2, f"PYTHONPATH does not take precedence: probes imports from {probe}"
        return run_tests(tests, src_root, timeout, stop_first=False, fork=fork)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutation", "fault", "status", "killed by", "s")]
    rows += [(o.mutation.name, o.mutation.fault, o.status, o.killer, f"{o.seconds:.0f}") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4].rjust(4))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also run the whole test files named for each mutation")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation (default 600)")
    parser.add_argument(
        "--no-fork", action="store_true", help="start a fresh interpreter per mutation instead of forking a warm one"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the test output of survivors")
    args = parser.parse_args(argv)
    fork = hasattr(os, "fork") and not args.no_fork
    selected = list(MUTATIONS)
    if args.only:
        names = {m.name for m in MUTATIONS}
        unknown = sorted(set(args.only) - names)
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; known: {sorted(names)}")
        selected = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in selected:
            print(f"{m.name:34} src/probes/{m.path:28} {m.fault}")
        return 0
    if fork:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        _preimport()
    if not args.no_baseline:
        rc, out = baseline(selected, full=args.full, timeout=args.timeout, fork=fork)
        if rc != 0:
            print(out[-6000:])
            print("mutations: the tests fail without any mutation; fix them first", file=sys.stderr)
            return 2
    outcomes = []
    for m in selected:
        o = check(m, full=args.full, timeout=args.timeout, fork=fork)
        print(f"{m.name}: {o.status} ({o.killer}, {o.seconds:.0f} s)", flush=True)
        if o.status != "killed" and args.verbose:
            print(o.output[-4000:])
        outcomes.append(o)
    print()
    print(table(outcomes))
    if any(o.status in ("not applied", "error") for o in outcomes):
        return 2
    return 1 if any(o.status == "survived" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
