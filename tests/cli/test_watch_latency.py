"""``probes watch`` shows a record within 2 s of the step that wrote it, with the default flush.

A "training" thread writes one record per step through a :class:`~probes.runlog.RunWriter` with
its default ``flush_every_s`` and calls ``maybe_flush`` after every step, as ``RunLog`` does after
every training batch; ``watch`` (its default poll interval, plain lines) follows the directory in
this thread and each printed line is timestamped. Fast steps (the rate limit of time-triggered
flushes bounds the wait) and slow steps (a quiet writer flushes at its next check) are both timed.
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import pytest
import torch

from probes.cli.watch import POLL_S, watch
from probes.core.records import Record
from probes.runlog import RunWriter, open_run

LIMIT_S = 2.0


class _Stamped(io.StringIO):
    """Records the time each ``step N`` line is printed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, float] = {}

    def write(self, text: str) -> int:
        now = time.monotonic()
        for m in re.finditer(r"^step\s+(\d+)", text, flags=re.M):
            self.seen.setdefault(int(m.group(1)), now)
        return super().write(text)


def _train(path: Path, steps: int, step_s: float, written: dict[int, float], ready: threading.Event) -> None:
    writer = RunWriter(path, background=True)  # the default flush_every_s
    for step in range(steps):
        time.sleep(step_s)
        written[step] = time.monotonic()
        writer.write(Record(step, "loss", {"value": torch.tensor(1.0 / (step + 1))}))
        if step == 0:
            writer.flush()  # a first shard, so the reader can open the run before watching
            ready.set()
        writer.maybe_flush()
    time.sleep(step_s)
    writer.close("finished")


@pytest.mark.parametrize(("steps", "step_s"), [(50, 0.06), (3, 1.5)], ids=["fast-steps", "slow-steps"])
def test_watch_shows_each_record_within_two_seconds(tmp_path: Path, steps: int, step_s: float) -> None:
    path = tmp_path / "run"
    written: dict[int, float] = {}
    ready = threading.Event()
    trainer = threading.Thread(target=_train, args=(path, steps, step_s, written, ready), daemon=True)
    trainer.start()
    assert ready.wait(10)
    out = _Stamped()
    code = watch(open_run(path), out, interval=POLL_S, timeout=20, from_start=True, plain=True)
    trainer.join(10)
    assert code == 0, out.getvalue()
    assert sorted(out.seen) == list(range(steps))
    latency = {s: out.seen[s] - written[s] for s in range(1, steps)}  # step 0 was flushed by hand
    worst = max(latency.values())
    assert worst < LIMIT_S, f"slowest record took {worst:.2f} s to show: {latency}"
