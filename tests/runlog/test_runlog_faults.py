"""Fault injection (issue 21, break 11 and the disk-full findings): ENOSPC from ``fsync`` on chosen
flushes, transient and persistent, with foreground and background writing. A transient fault loses
nothing; a disk that stays full keeps the training going, holds records within the memory bound,
and reports exactly what was lost at the end; the final status is written whenever the disk
takes a small marker shard, so ``probes watch`` ends."""

from __future__ import annotations

import errno
import os
import warnings

import numpy as np
import pytest
import torch
from hostile_lib import bounded
from runlog_testlib import StepProbe, tiny_loader, tiny_module, trainer

from probes.callbacks.run_log import RunLog
from probes.core.records import Record
from probes.runlog import RecordsLostError, RunLogError, RunLogWarning, RunWriter, open_run

REAL_FSYNC = os.fsync


class FullDisk:
    """``os.fsync`` replacement: fsync of a shard being written in ``run_dir`` raises ENOSPC while
    ``broken`` (or for the next ``fail_next`` calls); ``markers_pass``: empty marker shards (the
    final status) still fit."""

    def __init__(self, run_dir, *, markers_pass: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.run_dir = str(run_dir)
        self.broken = False
        self.fail_next = 0
        self.markers_pass = markers_pass
        self.failed = 0
        self.passed = 0

    def __call__(self, fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path.startswith(self.run_dir) and "/.tmp-shard-" in path:
            with open(path, "rb") as f:
                marker = b'"sources":"{}"' in f.read(1 << 16)
            if self.fail_next > 0 or (self.broken and not (marker and self.markers_pass)):
                self.fail_next = max(0, self.fail_next - 1)
                self.failed += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.passed += 1
        REAL_FSYNC(fd)


@pytest.fixture
def disk(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    fault = FullDisk(tmp_path / "run")
    monkeypatch.setattr(os, "fsync", fault)
    return fault


def rec(s: int, source: str = "a") -> Record:
    return Record(s, source, {"v": torch.full((8,), float(s)), "i": torch.tensor(s)}, epoch=s // 4)


def writer(tmp_path, **kw):  # type: ignore[no-untyped-def]
    return RunWriter(tmp_path / "run", **{"flush_every_n": 2, "retry_backoff_s": 0.001, **kw})


def assert_complete(path, steps) -> None:  # type: ignore[no-untyped-def]
    run = open_run(path)
    assert run.steps("a").tolist() == list(steps)
    np.testing.assert_array_equal(run.read("a/v")[1], np.repeat(np.asarray(steps, dtype=np.float32)[:, None], 8, 1))
    np.testing.assert_array_equal(run.epochs("a"), np.asarray(steps) // 4)


@pytest.mark.parametrize("background", [False, True])
def test_transient_enospc_is_retried_and_loses_nothing(tmp_path, disk, background):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunLogWarning)  # a retry that succeeds warns about nothing
        with writer(tmp_path, background=background) as w:
            for s in range(10):
                if s == 4:
                    disk.fail_next = 2  # the flush of steps 4-5: two attempts fail, the third lands
                w.write(rec(s))
            w.flush()
            assert w.n_held == 0 and w.n_lost == 0
    assert disk.failed == 2
    assert_complete(tmp_path / "run", range(10))
    assert open_run(tmp_path / "run").status == "finished"


@pytest.mark.parametrize("background", [False, True])
def test_disk_full_for_a_while_holds_then_writes_everything(tmp_path, disk, background):
    w = writer(tmp_path, background=background)
    for s in range(4):
        w.write(rec(s))
    w.flush()
    disk.broken = True
    with pytest.warns(RunLogWarning, match=r"Could not write shard seq 2 .* after 4 attempts \(OSError \(errno 28\)"):
        for s in range(4, 8):
            w.write(rec(s))
        w.flush()
    assert w.n_held == 4 and w.n_lost == 0  # training goes on; the records wait in memory
    assert_complete(tmp_path / "run", range(4))  # readers see what landed
    disk.broken = False
    w._outbox._next_retry = 0.0  # the retry interval (seconds) has passed
    for s in range(8, 10):
        w.write(rec(s))
    w.close()  # nothing lost: no error
    assert_complete(tmp_path / "run", range(10))
    assert open_run(tmp_path / "run").status == "finished"


def test_foreground_flush_error_keeps_its_batch(tmp_path, disk):
    """The issue's case: a foreground flush hit an I/O error, raised a raw OSError and dropped the
    batch, leaving steps [0, 2] after recovery. (Default retry settings: about a second of backoff.)"""
    w = RunWriter(tmp_path / "run", flush_every_n=100)
    w.write(rec(0))
    w.flush()
    disk.broken = True
    w.write(rec(1))
    with pytest.warns(RunLogWarning, match="Holding 1 records"):
        w.flush()  # no exception: the batch is held
    disk.broken = False
    w._outbox._next_retry = 0.0
    w.write(rec(2))
    w.flush()
    w.close()
    assert_complete(tmp_path / "run", [0, 1, 2])


def test_held_records_are_retried_without_new_records(tmp_path, disk):
    w = writer(tmp_path)
    w.write(rec(0))
    disk.broken = True
    with pytest.warns(RunLogWarning):
        w.write(rec(1))  # the flush of steps 0-1 is held
    assert w.n_held == 2 and not w.maybe_flush()  # not due yet
    disk.broken = False
    w._outbox._next_retry = 0.0  # the retry interval has passed
    assert w.maybe_flush() and w.n_held == 0  # the end of the next training batch retries it
    assert_complete(tmp_path / "run", [0, 1])
    w.close()


def test_on_error_raise_raises_a_typed_error_and_keeps_the_records(tmp_path, disk):
    w = writer(tmp_path, flush_every_n=100, on_error="raise")
    w.write(rec(0))
    disk.broken = True
    raised = pytest.raises(RunLogError, match=r"Could not write shard seq 0 .*on_error='raise'")
    with pytest.warns(RunLogWarning), raised:
        w.flush()
    disk.broken = False
    w._outbox._next_retry = 0.0
    w.write(rec(1))
    w.flush()
    w.close()
    assert_complete(tmp_path / "run", [0, 1])


@pytest.mark.parametrize("background", [False, True])
def test_persistent_disk_full_reports_the_loss_and_writes_the_status(tmp_path, disk, background):
    disk.markers_pass = True  # a tiny marker shard still fits on the full disk
    w = writer(tmp_path, background=background)
    for s in range(4):
        w.write(rec(s))
    w.flush()
    disk.broken = True
    with pytest.warns(RunLogWarning):
        for s in range(4, 9):
            w.write(rec(s))
        with pytest.raises(RecordsLostError, match=r"5 records \(steps 4..8\) could not be written to .* lost") as exc:
            w.close("finished")
    assert (exc.value.n_records, exc.value.steps) == (5, (4, 8))
    run = open_run(tmp_path / "run")
    assert run.status == "finished" and run.steps("a").tolist() == [0, 1, 2, 3]
    assert not [n for n in os.listdir(tmp_path / "run") if n.startswith(".tmp-")]  # no temporaries left
    from probes.cli.watch import watch

    assert bounded(lambda: watch(open_run(tmp_path / "run"), open(os.devnull, "w"), interval=0.05), 10) == 0


def test_a_disk_that_takes_nothing_says_the_status_is_missing(tmp_path, disk):
    w = writer(tmp_path)
    w.write(rec(0))
    disk.broken = True
    with pytest.warns(RunLogWarning), pytest.raises(RecordsLostError, match="final status could not be written"):
        w.write(rec(1))
        w.close("failed")
    assert open_run(tmp_path / "run").sources() == []


def test_held_records_are_bounded_in_memory(tmp_path, disk):
    per_flush = 2 * (8 * 4 + 8 + 24)  # two records: v float32[8], i int64, step/epoch/time
    w = writer(tmp_path, max_held_bytes=3 * per_flush)
    w.write(rec(0))
    w.write(rec(1))
    disk.broken = True
    with pytest.warns(RunLogWarning) as caught:
        for s in range(2, 12):  # five flushes held; the oldest two are dropped at the bound
            w.write(rec(s))
    assert w._outbox.held_bytes <= 3 * per_flush and w.n_held == 6 and w.n_lost == 4
    assert any("Lost 2 records" in str(c.message) and "steps 2..3" in str(c.message) for c in caught)
    disk.broken = False
    w._outbox._next_retry = 0.0
    with pytest.raises(RecordsLostError, match=r"4 records \(steps 2..5\).*memory bound of 384 bytes"):
        w.close()
    assert_complete(tmp_path / "run", [0, 1, *range(6, 12)])


class BreakDisk:
    """A callback that fills the disk after update ``start`` and frees it after update ``stop``."""

    def __init__(self, disk: FullDisk, start: int, stop: int) -> None:
        self.disk, self.start, self.stop = disk, start, stop

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.disk.broken = self.start <= trainer.global_step < self.stop


def fit(tmp_path, disk, start: int, stop: int, background: bool) -> StepProbe:  # type: ignore[no-untyped-def]
    import lightning.pytorch as pl

    class Hook(BreakDisk, pl.Callback):
        pass

    probe = StepProbe()
    log = RunLog(tmp_path / "run", flush_every_n=2, background=background)
    trainer([probe, log, Hook(disk, start, stop)], max_steps=12).fit(tiny_module(), tiny_loader())
    return probe


@pytest.mark.parametrize("background", [False, True])
def test_training_survives_a_full_disk(tmp_path, disk, background):
    with pytest.warns(RunLogWarning, match="Training continues"):
        probe = fit(tmp_path, disk, 3, 7, background)
    assert disk.failed > 0
    run = open_run(tmp_path / "run")
    assert run.status == "finished"
    np.testing.assert_array_equal(run.steps("step"), [r.step for r in probe.history])
    np.testing.assert_array_equal(run.steps("step"), np.arange(13))


@pytest.mark.parametrize("background", [False, True])
def test_fit_ends_with_a_clear_error_when_records_are_lost(tmp_path, disk, background):
    disk.markers_pass = True
    with pytest.warns(RunLogWarning), pytest.raises(RecordsLostError, match=r"records \(steps \d+..12\) could not"):
        fit(tmp_path, disk, 5, 10**9, background)
    run = open_run(tmp_path / "run")
    assert run.status == "finished"  # the status marker landed: `probes watch` ends
    assert run.steps("step").tolist() == list(range(len(run.steps("step")))) and run.last_step() < 12
