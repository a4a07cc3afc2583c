"""SIGKILL a training process at random moments: the log always opens, holds every record up to
the last flush, and never shows a partial shard. In half of the rounds the writer has forked a
helper process that outlives it: the helper must not keep the directory locked."""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from runlog_testlib import step_values

from probes.core.records import Record
from probes.runlog import RunWriter, open_run
from probes.runlog.layout import parse_shard_name


class Lines:
    """Non-blocking JSON-line reader over a pipe, with deadlines."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.fd = stream.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.buf = b""

    def next(self, timeout: float):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("zygote exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


@pytest.mark.timeout(180)
def test_sigkill_at_random_moments(tmp_path, crash_zygote):
    seed = int(os.environ.get("PROBES_CRASH_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    zyg, stderr_path = crash_zygote
    lines = Lines(zyg.stdout)
    helpers: list[int] = []
    try:
        ready = lines.next(150)
        assert ready == {"event": "ready"}, stderr_path.read_text()[-2000:]
        for round_ in range(4):
            run_dir = tmp_path / f"run{round_}"
            cfg = {
                "dir": str(run_dir),
                "flush_every_n": rng.choice([1, 2, 3, 5]),
                "background": round_ % 2 == 1,
                "fork_helper": round_ >= 2,
            }
            zyg.stdin.write((json.dumps(cfg) + "\n").encode())
            zyg.stdin.flush()
            forked = lines.next(30)
            assert forked["event"] == "forked"
            events: list[dict] = []
            if cfg["fork_helper"]:  # kill the writer only once its helper runs
                while (e := lines.next(60))["event"] != "helper":
                    events.append(e)
                helpers.append(e["pid"])
            delay = rng.uniform(0.2, 1.2)
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0:
                e = lines.next(left)
                if e is not None:
                    events.append(e)
            os.kill(forked["pid"], signal.SIGKILL)
            while (e := lines.next(30))["event"] != "reaped":
                events.append(e)  # flushed before the kill, still in the pipe
            assert e["signal"] == signal.SIGKILL, f"seed {seed}: child ended on its own"
            if cfg["fork_helper"]:
                os.kill(helpers[-1], 0)  # the helper is still alive while the log is taken over
            check_log(run_dir, [e for e in events if e["event"] == "flushed"], f"seed {seed} round {round_} {cfg}")
    finally:
        for pid in helpers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        zyg.stdin.close()
        zyg.wait(timeout=30)


def check_log(run_dir: Path, flushed: list[dict], where: str) -> None:
    if not run_dir.exists():
        assert not flushed, where
        return
    visible = [n for n in os.listdir(run_dir) if not n.startswith(".")]
    assert all(parse_shard_name(n) is not None for n in visible), (where, visible)
    run = open_run(run_dir)  # strict: any partial or corrupt shard under a shard name raises
    assert run.status == "running", where
    reported = sum(e["n"] for e in flushed)
    on_disk = sum(len(run.steps(s)) for s in run.sources())
    assert on_disk >= reported, (where, on_disk, reported)
    if flushed:
        assert run.last_step() >= max(e["step_max"] for e in flushed), where
        assert len(visible) >= len(flushed), where  # every reported shard is there
    for source in run.sources():  # every record up to the last flush: no gaps, no duplicates
        steps = run.steps(source)
        np.testing.assert_array_equal(steps, np.arange(len(steps)), err_msg=where)
    if "step" in run.sources():
        steps, values = run.read("step/value")
        np.testing.assert_array_equal(values, np.stack([step_values(int(s))["value"].numpy() for s in steps]))
        assert np.array_equal(run.read("step/even")[1], steps % 2 == 0)
    # the dead writer's lock is gone: a resumed writer can take the directory over (and tidies temporaries)
    with RunWriter(run_dir, branch=run.tip()) as w:
        w.write(Record(run.last_step() + 1, "after", {"v": torch.tensor(1)}))
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]
    assert open_run(run_dir).steps("after").tolist() == [run.last_step() + 1]
