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


def test_cpu_records_are_kept_as_they_are() -> None:
    history = RecordHistory(3)
    record = Record(0, "s", {"x": torch.arange(4.0)})
    history.append(record)
    assert history[0] is record  # no copy on the host


class _Event:
    def __init__(self) -> None:
        self.waited = 0

    def synchronize(self) -> None:
        self.waited += 1


def test_access_waits_for_host_copies_in_flight_once() -> None:
    history = RecordHistory(None)
    history.append(Record(0, "s", {"x": torch.zeros(2)}))
    for access in (lambda h: h[0], lambda h: list(h), lambda h: list(reversed(h)), lambda h: h[-1:]):
        event = _Event()
        history._in_flight.append(event)  # what a CUDA record leaves behind
        access(history)
        assert event.waited == 1 and history._in_flight == []
        access(history)
        assert event.waited == 1  # settled once


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_records_live_on_the_host_with_equal_values() -> None:
    probe = Probe("cuda")
    sink = _Counting()
    probe.subscribe(sink)
    values = [torch.randn(1024, device="cuda") for _ in range(3)]
    for step, v in enumerate(values):
        probe.emit(step, {"v": v * 2})
    for record, v in zip(probe.history, values):
        assert record.tensors["v"].device.type == "cpu"
        torch.testing.assert_close(record.tensors["v"], (v * 2).cpu(), rtol=0, atol=0)
