"""Shards are written durably and atomically: content under a temporary name, fsynced, renamed to
the final name, then the directory fsynced; a write that fails before the rename leaves no shard.

Observed from outside the writer by spying on ``os.fsync`` and ``os.replace`` (the file behind an
fsynced descriptor is read from ``/proc/self/fd``), so the test does not depend on how the writer
is organised, only on the system calls a crash-safe write must make.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from probes.core.records import Record
from probes.runlog import RunWriter, open_run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def _spy(monkeypatch: pytest.MonkeyPatch, fail_replace: bool = False) -> list[tuple[str, ...]]:
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        try:
            path = os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            path = "?"
        events.append(("fsync", path))
        real_fsync(fd)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        if fail_replace:
            raise OSError(5, "simulated crash before the rename")
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _shards(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.name.startswith("shard-"))


def test_every_shard_is_fsynced_under_a_temporary_name_then_renamed(tmp_path: Path, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    events = _spy(monkeypatch)
    with RunWriter(run_dir, flush_every_n=2) as w:
        for s in range(6):
            w.write(Record(s, "x", {"v": torch.tensor(float(s))}))
    monkeypatch.undo()
    shards = _shards(run_dir)
    assert len(shards) >= 3
    directory = os.path.realpath(run_dir)
    for shard in shards:
        final = os.path.realpath(shard)
        renames = [e for e in events if e[0] == "replace" and e[2] == final]
        assert len(renames) == 1, f"{shard.name} did not appear through exactly one rename: {events}"
        tmp = renames[0][1]
        assert tmp != final and os.path.dirname(tmp) == directory  # same directory: the rename is atomic
        assert not os.path.exists(tmp)
        i = events.index(renames[0])
        assert ("fsync", tmp) in events[:i], f"{shard.name}: content not fsynced before the rename"
        assert ("fsync", directory) in events[i + 1 :], f"{shard.name}: directory not fsynced after the rename"
    steps, v = open_run(run_dir).read("x/v")
    assert steps.tolist() == list(range(6)) and v.tolist() == [float(s) for s in range(6)]


@pytest.mark.filterwarnings("ignore:Could not write shard")
def test_a_write_that_fails_before_the_rename_leaves_no_shard(tmp_path: Path, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    w = RunWriter(run_dir, flush_every_n=1000)
    w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
    _spy(monkeypatch, fail_replace=True)
    try:
        w.flush()
    except Exception:  # the writer may raise or keep the records to retry; either way no shard yet
        pass
    assert _shards(run_dir) == [], "a shard name appeared although its rename never happened"
    assert not [p for p in run_dir.iterdir() if p.is_file() and p.stat().st_size and "shard" in p.name
                and not p.name.startswith(".")], "a partial shard is visible"
    monkeypatch.undo()
    try:
        w.close()
    except Exception:
        pass
