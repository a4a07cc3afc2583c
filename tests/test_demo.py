"""The main job, `probes demo`: every figure it prints is checked against its run logs read
directly, and its options (`--steps`, the default run directory, refusing a used one) do what
they say.

One quick demo runs in-process (through `probes.cli.entry`, as the console script does) for the
whole module; `test_report_prints_the_records_it_is_given` checks the printing alone on
hand-made records in well under a second (the mutation check's quick form uses it).
"""

from __future__ import annotations

import fcntl
import io
import math
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from probes.cli.entry import main
from probes.core.records import Record
from probes.demos.main_job import quick_config
from probes.runlog import open_run

STEPS = 40  # pretraining steps of the LM (--steps); the rest of --quick is unchanged
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
ROW = re.compile(rf"^\s*(\S+)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+(\d+)\s+(yes|no)\s*$")
COLLAPSE = re.compile(  # \s+: the console may wrap the line
    rf"format\s+collapse\s+flagged\s+at\s+RL\s+step\s+(\d+):\s+entropy\s+({NUMBER})\s+->\s+({NUMBER})\s+bits,"
    rf"\s+dominant\s+share\s+({NUMBER})"
)


def table_rows(text: str) -> dict[str, tuple[float, float, float, int, bool]]:
    """The facts table's cells, by fact name (box characters removed)."""
    rows = {}
    for line in text.splitlines():
        m = ROW.match(re.sub(r"[│┃|]", " ", line))
        if m:
            rows[m[1]] = (float(m[2]), float(m[3]), float(m[4]), int(m[5]), m[6] == "yes")
    return rows


def sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits, the way the table prints it."""
    return float(f"{x:.{digits - 1}e}")


def printed_as(printed: float, logged: float, digits: int = 3) -> bool:
    """``printed`` is ``logged`` to ``digits`` significant digits (half a unit of the last digit;
    the log may hold float32 where the report printed float64)."""
    if logged == 0:
        return printed == 0
    unit = 10.0 ** (math.floor(math.log10(abs(logged))) - digits + 1)
    return abs(printed - logged) <= 0.5 * unit * 1.001


# --- the report alone, on hand-made records ----------------------------------------------------


def _fake_result() -> tuple[SimpleNamespace, dict[str, Any]]:
    names = ["banana/yellow", "jam/salty", "pearl/vermilion"]
    last = {
        "p_before": torch.tensor([1.88e-3, 6.81e-2, 5.47e-27], dtype=torch.float64),
        "s_mem": torch.tensor([15.8, 0.25, 6.83e16], dtype=torch.float64),
        "s_prime": torch.tensor([26.7, 1.79, 1.83e15], dtype=torch.float64),
        "exposures": torch.tensor([15, 7, 0]),
        "surprising": torch.tensor([False, False, True]),
    }
    first = {"entropy_bits": torch.tensor(0.8437), "dominant_share": torch.tensor(0.7)}
    final = {"entropy_bits": torch.tensor(0.1234), "dominant_share": torch.tensor(0.9765)}
    priming = SimpleNamespace(names=names, history=[Record(3, "priming", last)])
    rollouts = SimpleNamespace(
        collapse_state=SimpleNamespace(first_step=16),
        history=[Record(0, "format", first), Record(29, "format", final)],
    )
    result = SimpleNamespace(
        lm_run=Path("out/lm"), rl_run=Path("out/rl"), priming=priming, rollouts=rollouts, seconds=1.0
    )
    return result, {"names": names, "last": last, "first": first, "final": final}


def test_report_prints_the_records_it_is_given() -> None:
    from probes.demos.main_job import _report

    result, want = _fake_result()
    buf = io.StringIO()
    _report(result, Console(file=buf, width=100, color_system=None))  # type: ignore[arg-type]
    text = buf.getvalue()
    rows = table_rows(text)
    assert list(rows) == want["names"]
    last = want["last"]
    for i, name in enumerate(want["names"]):
        p_before, s_mem, s_prime, exposures, surprising = rows[name]
        assert p_before == pytest.approx(float(last["p_before"][i]), rel=6e-3), name
        assert s_mem == pytest.approx(float(last["s_mem"][i]), rel=6e-3), name
        assert s_prime == pytest.approx(float(last["s_prime"][i]), rel=6e-3), name
        assert exposures == int(last["exposures"][i]) and surprising == bool(last["surprising"][i]), name
    m = COLLAPSE.search(text)
    assert m is not None, text
    assert int(m[1]) == 16
    assert (float(m[2]), float(m[3]), float(m[4])) == pytest.approx((0.84, 0.12, 0.98), abs=1e-9)
    assert "probes replay out/lm --speed 50" in text and "probes plot out/rl -o out/rl.png" in text


# --- one real quick demo -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """`probes demo --quick --steps 40 --no-live` run from an empty directory, without --out."""
    cwd = tmp_path_factory.mktemp("demo_cwd")
    threads = torch.get_num_threads()
    old = os.getcwd()
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    try:
        import contextlib

        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["demo", "--quick", "--steps", str(STEPS), "--no-live"])
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    runs = sorted((cwd / "runs").iterdir()) if (cwd / "runs").exists() else []
    return SimpleNamespace(rc=rc, text=out.getvalue(), err=err.getvalue(), cwd=cwd, runs=runs)


def test_demo_writes_to_a_fresh_dated_directory(demo: SimpleNamespace) -> None:
    assert demo.rc == 0, demo.err[-3000:]
    assert len(demo.runs) == 1 and re.fullmatch(r"demo-\d{8}-\d{6}", demo.runs[0].name)
    lm, rl = open_run(demo.runs[0] / "lm"), open_run(demo.runs[0] / "rl")
    assert sorted(lm.sources()) == ["keyword", "priming"] and rl.sources() == ["format"]
    assert lm.status == "finished" and rl.status == "finished"
    rel = Path("runs") / demo.runs[0].name
    for run in ("lm", "rl"):
        assert f"probes summary {rel / run}" in demo.text and f"probes plot {rel / run} -o {rel / run}.png" in demo.text


def test_steps_sets_the_pretraining_length(demo: SimpleNamespace) -> None:
    lm = open_run(demo.runs[0] / "lm")
    steps, exposures = lm.read("priming/exposures")
    # the first fact enters the stream right after pretraining: batch STEPS is update STEPS + 1,
    # which the reading at step STEPS + 1 is the first to contain
    first_seen = int(steps[np.argmax(exposures[:, 0] > 0)])
    assert first_seen == STEPS + 1
    assert f"{STEPS} pretraining steps" in demo.text


def test_every_cell_of_the_facts_table_is_the_logged_value(demo: SimpleNamespace) -> None:
    lm = open_run(demo.runs[0] / "lm")
    names = [s["name"] for s in lm.describe("priming")["samples"]]
    rows = table_rows(demo.text)
    assert list(rows) == names, demo.text
    last = {m: lm.read(f"priming/{m}")[1][-1] for m in ("p_before", "s_mem", "s_prime", "exposures", "surprising")}
    threshold = float(lm.describe("priming").get("threshold", 1e-3))
    for i, name in enumerate(names):
        p_before, s_mem, s_prime, exposures, surprising = rows[name]
        assert printed_as(p_before, float(last["p_before"][i])), (name, p_before)  # printed as %.2e
        assert printed_as(s_mem, float(last["s_mem"][i])), (name, s_mem)  # printed as %.3g
        assert printed_as(s_prime, float(last["s_prime"][i])), (name, s_prime)
        assert exposures == int(last["exposures"][i]) == quick_config().presentations, name
        assert surprising == bool(last["surprising"][i]) == (float(last["p_before"][i]) < threshold), name


def test_the_collapse_line_is_the_logged_collapse(demo: SimpleNamespace) -> None:
    rl = open_run(demo.runs[0] / "rl")
    steps = rl.steps("format")
    _, collapsed = rl.read("format/collapsed")
    _, entropy = rl.read("format/entropy_bits")
    _, share = rl.read("format/dominant_share")
    _, dist = rl.read("format/dist")
    m = COLLAPSE.search(demo.text)
    assert m is not None and collapsed.any(), demo.text
    assert int(m[1]) == int(steps[np.argmax(collapsed)])
    assert float(m[2]) == round(float(entropy[0]), 2) and float(m[3]) == round(float(entropy[-1]), 2)
    assert float(m[4]) == round(float(share[-1]), 2)
    # the logged share and entropy are those of the logged distribution among classified outputs
    # (the formats, without the final "other" bucket)
    d = dist[-1, :-1].astype(np.float64)
    assert float(share[-1]) == pytest.approx(d.max() / d.sum(), rel=1e-6)
    q = d[d > 0] / d.sum()
    assert float(entropy[-1]) == pytest.approx(-(q * np.log2(q)).sum(), abs=1e-6)


def test_summary_of_the_demo_prints_the_logged_samples(demo: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    run_dir = demo.runs[0] / "lm"
    assert main(["summary", str(run_dir)]) == 0
    text = capsys.readouterr().out
    lm = open_run(run_dir)
    names = [s["name"] for s in lm.describe("priming")["samples"]]
    last = {m: lm.read(f"priming/{m}")[1][-1] for m in ("p_before", "s_prime", "log10_s_prime", "exposures")}
    section = text.split("surprising samples", 1)[1].splitlines()
    for i, name in enumerate(names):
        line = next(x for x in section if x.strip().startswith(name + " "))
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0] == name
        assert float(cells[1]) == pytest.approx(float(last["p_before"][i]), rel=5e-4)
        assert float(cells[2]) == pytest.approx(float(last["s_prime"][i]), rel=5e-4)
        assert float(cells[3]) == pytest.approx(float(last["log10_s_prime"][i]), rel=5e-4, abs=5e-4)
        assert int(cells[4]) == int(last["exposures"][i])


def test_a_used_directory_is_refused_and_left_intact(demo: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    lm_dir = demo.runs[0] / "lm"
    before = sorted(p.name for p in lm_dir.iterdir())
    steps = open_run(lm_dir).steps("priming").tolist()
    assert main(["demo", "--quick", "--no-live", "--out", str(demo.runs[0])]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert sorted(p.name for p in lm_dir.iterdir()) == before
    assert open_run(lm_dir).steps("priming").tolist() == steps


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_steps_below_one_is_an_error(steps: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--quick", "--no-live", "--steps", steps, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"--steps must be a positive integer, got {steps}" in err
    assert not (tmp_path / "d").exists()


def test_printed_as_accepts_rounding_only() -> None:
    assert sig(1.8849e-3, 3) == 1.88e-3 and sig(6.8349e16, 3) == 6.83e16 and sig(15.849, 3) == 15.8
    assert printed_as(1.88e-3, 1.8849e-3) and printed_as(15.8, 15.75) and printed_as(6.83e16, 6.8349e16)
    assert not printed_as(1.88e-2, 1.8849e-3) and not printed_as(15.9, 15.849) and not printed_as(-15.8, 15.8)


# --- the live mode, in a pseudo-terminal ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.timeout(300)
def test_live_mode_in_a_terminal(tmp_path: Path) -> None:
    """`probes demo` as typed in a terminal (live dashboard and progress bar): it finishes, draws
    the dashboard while training, leaves no escape-code debris, and the final screen (judged by
    the pyte terminal emulator) holds the facts table with the logged figures."""
    pyte = pytest.importorskip("pyte")
    cols, rows = 120, 50
    out_dir = tmp_path / "live"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "probes.cli.entry", "demo", "--quick", "--steps", "5", "--out", str(out_dir)]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    raw = b""
    deadline = time.monotonic() + 280
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            raw += data
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    rc = proc.wait()
    text = raw.decode("utf-8", "replace")
    screen = pyte.HistoryScreen(cols, rows, history=100_000, ratio=0.001)
    pyte.Stream(screen).feed(text)
    lines = ["".join(line[x].data for x in range(cols)).rstrip() for line in screen.history.top]
    lines += [line.rstrip() for line in screen.display]
    final = "\n".join(lines)
    assert rc == 0, final[-4000:]
    assert "Traceback" not in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"probes  step \d+", plain), "the dashboard was never drawn"
    assert text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")  # the cursor is visible at the end
    lm = open_run(out_dir / "lm")
    names = [s["name"] for s in lm.describe("priming")["samples"]]
    table = table_rows(final)
    assert list(table) == names, final[-4000:]
    _, s_mem = lm.read("priming/s_mem")
    for i, name in enumerate(names):
        assert printed_as(table[name][1], float(s_mem[-1, i])), (name, table[name])
