"""Bounded memory: a probe keeps at most its history limit of records; its sinks still get all."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from probes.core.probe import Probe
from probes.core.records import Record, RecordHistory


class _Counting:
    def __init__(self) -> None:
        self.n = 0
        self.steps: list[int] = []

    def register_source(self, source: str, describe: Any) -> None:
        pass

    def write(self, record: Record) -> None:
        self.n += 1
        self.steps.append(record.step)

    def flush(self) -> None:
        pass


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read the resident set size")
def test_ten_thousand_readings_of_1024_pairs_keep_memory_flat() -> None:
    probe = Probe("bounded")
    probe.history.limit = 500
    sink = _Counting()
    probe.subscribe(sink)
    per_record = 5 * 1024 * 8  # five float64 metrics of 1,024 pairs: 40 KiB; 10,000 of them: 400 MiB
    before = _rss_bytes()
    for step in range(10_000):
        probe.emit(step, {f"m{k}": torch.full((1024,), float(step), dtype=torch.float64) for k in range(5)})
    grown = _rss_bytes() - before
    assert len(probe.history) == 500 and probe.history.n_dropped == 9_500
    assert [r.step for r in probe.history[:2]] == [9_500, 9_501]  # the newest are kept, in order
    assert sink.n == 10_000 and sink.steps[-1] == 9_999  # the sinks (the run log) get every record
    assert grown < 500 * per_record * 3 + 64 * 2**20, f"resident memory grew {grown / 2**20:.0f} MiB"


def test_history_limit_checks_and_none_keeps_all() -> None:
    unbounded = RecordHistory(None)
    for step in range(50):
        unbounded.append(Record(step, "s", {}))
    assert len(unbounded) == 50 and unbounded.n_dropped == 0
    with pytest.raises(ValueError, match="history `limit` to be a positive int or None, got 0"):
        RecordHistory(0)
