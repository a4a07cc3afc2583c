"""`--version`, `python -m probes`, a folder of runs, empty replay ranges, `watch --plain` and no false resume line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from probes import __version__
from probes.cli.entry import main
from probes.core.records import Record
from probes.runlog import RunWriter


def _run(path: Path, steps: range, *, finish: bool = True) -> Path:
    w = RunWriter(path, flush_every_n=1)
    for s in steps:
        w.write(Record(s, "x", {"v": torch.tensor(float(s))}))
    if finish:
        w.close("finished")
    return path


def _cli(capsys, *argv: object) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_version_and_python_dash_m(capsys) -> None:  # type: ignore[no-untyped-def]
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"probes {__version__}"
    proc = subprocess.run([sys.executable, "-m", "probes", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"probes {__version__}"


def test_summary_of_a_folder_lists_its_runs(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _run(tmp_path / "a", range(3))
    _run(tmp_path / "nested" / "b", range(5))
    (tmp_path / "not_a_run").mkdir()
    rc, out, err = _cli(capsys, "summary", tmp_path)
    assert rc == 0, err
    lines = out.splitlines()
    assert "folder of 2 run(s)" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows[str(tmp_path / "a")][1:4] == ["finished", "2", "x"]
    assert rows[str(tmp_path / "nested" / "b")][1:3] == ["finished", "4"]
    rc, out, _ = _cli(capsys, "summary", tmp_path, "--json")
    listed = json.loads(out)["runs"]
    assert [(Path(r["run"]).name, r["last_step"], r["records"]) for r in listed] == [("a", 2, {"x": 3}),
                                                                                    ("b", 4, {"x": 5})]
    rc, _, err = _cli(capsys, "summary", tmp_path / "not_a_run")  # an empty folder is still an error
    assert rc == 1 and "holds no records" in err


def test_replay_of_an_empty_range_is_an_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = _run(tmp_path / "r", range(60))
    rc, out, err = _cli(capsys, "replay", run, "--start", "100", "--plain", "--speed", "0")
    assert rc == 1 and "no records from step 100 on" in err and "steps 0..59 (60 readings)" in err
    rc, _, err = _cli(capsys, "replay", run, "--start", "10", "--stop", "10", "--plain", "--speed", "0")
    assert rc == 1 and "in steps [10, 10)" in err
    rc, out, _ = _cli(capsys, "replay", run, "--start", "58", "--plain", "--speed", "0")
    assert rc == 0 and out.strip().endswith("replayed 2 steps")


def test_watch_plain_and_no_false_resume_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "live"
    writer = RunWriter(run, flush_every_n=1)  # the directory exists before its first shard, as under RunLog

    def train() -> None:
        time.sleep(0.5)
        for s in range(4):
            writer.write(Record(s, "x", {"v": torch.tensor(float(s))}))
        writer.close("finished")

    t = threading.Thread(target=train)
    t.start()
    rc, out, err = _cli(capsys, "watch", run, "--plain", "--from-start", "--interval", "0.05", "--timeout", "20")
    t.join()
    assert rc == 0, err
    assert "resumed" not in out  # a fresh run's first timeline is no resume
    assert [int(line.split()[1]) for line in out.splitlines() if line.startswith("step")] == [0, 1, 2, 3]
