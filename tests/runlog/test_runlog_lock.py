"""Issue 21, break 12: the directory lock outlived a SIGKILLed writer whose forked helper
inherited the ``flock``. The lock is now a POSIX record lock: not inherited by ``fork``, released
by the kernel when its holder dies, and still exclusive between live processes."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from probes.core.records import Record
from probes.runlog import RunLogError, RunWriter, open_run


def _child(body) -> int:  # type: ignore[no-untyped-def]
    """Fork; run ``body(write_fd)`` in the child (which then waits to be killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            body(w)
        except BaseException as e:
            os.write(w, f"error {type(e).__name__}: {e}\n".encode())
            os._exit(1)
        while True:
            time.sleep(1)
    os.close(w)
    return pid, r  # type: ignore[return-value]


def _read_line(fd: int, timeout: float = 30) -> str:
    deadline, buf = time.monotonic() + timeout, b""
    os.set_blocking(fd, False)
    while b"\n" not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"no line from the child within {timeout} s (got {buf!r})")
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not chunk:
            raise AssertionError(f"child closed the pipe (got {buf!r})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(60)
def test_a_helper_forked_by_a_killed_writer_does_not_keep_the_lock(tmp_path):
    def writer_with_helper(out: int) -> None:
        w = RunWriter(tmp_path, flush_every_n=1)
        w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
        helper = os.fork()
        if helper == 0:  # e.g. a data-loading or monitoring process: it outlives its parent
            time.sleep(60)
            os._exit(0)
        os.write(out, f"ready {helper}\n".encode())

    pid, r = _child(writer_with_helper)
    line = _read_line(r)
    assert line.startswith("ready"), line
    helper = int(line.split()[1])
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert _alive(helper)  # the helper still runs, with its copy of the writer's descriptors
        run = open_run(tmp_path)
        with RunWriter(tmp_path, branch=run.tip()) as w:  # the dead writer's directory is taken over
            w.write(Record(1, "x", {"v": torch.tensor(2.0)}))
        assert open_run(tmp_path).steps("x").tolist() == [0, 1]
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    finally:
        os.kill(helper, signal.SIGKILL)
        os.close(r)


@pytest.mark.timeout(60)
def test_the_lock_still_excludes_live_writers(tmp_path):
    w = RunWriter(tmp_path)
    with pytest.raises(RunLogError, match=rf"another RunWriter \(pid {os.getpid()}\), in this process"):
        RunWriter(tmp_path)

    def second_writer(out: int) -> None:  # a forked child of the live writer, and an unrelated process
        try:
            RunWriter(tmp_path)
            os.write(out, b"took it\n")
        except RunLogError as e:
            os.write(out, (str(e).replace("\n", " ") + "\n").encode())

    pid, r = _child(second_writer)
    try:
        line = _read_line(r)
        assert f"is being written by another RunWriter (pid {os.getpid()})" in line and "this process" not in line
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    w.write(Record(0, "x", {"v": torch.tensor(1.0)}))  # the refused attempts did not release it
    w.close()
    with RunWriter(tmp_path, branch=open_run(tmp_path).tip()):
        pass


def test_a_stale_lock_file_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("999999999")  # a pid that died without unlocking
    with RunWriter(tmp_path) as w:
        w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
        assert (tmp_path / ".lock").read_text() == str(os.getpid())


def test_a_linked_lock_file_is_not_followed(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    with pytest.raises(RunLogError, match=r"Cannot open the lock file .*\.lock"):
        RunWriter(run)
    assert target.read_text() == "keep me"
    (run / ".lock").unlink()
    (run / ".lock").mkdir()
    with pytest.raises(RunLogError, match="lock file"):
        RunWriter(run)
    (run / ".lock").rmdir()
    (run / ".tmp-shard-000000-t000.safetensors.1").mkdir()  # a dead writer's temporary, as a directory
    (run / ".tmp-shard-000001-t000.safetensors.1").symlink_to(target)
    with RunWriter(run) as w:
        w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
    assert target.read_text() == "keep me" and open_run(run).steps("x").tolist() == [0]
