"""Fixtures of the console tests (records and helpers live in ``_records.py``)."""

from __future__ import annotations

import pytest

from probes.console import Dashboard

from ._records import DESCRIBES, FakeClock, format_record, keyword_record, priming_record


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dashboard(clock: FakeClock) -> Dashboard:
    """A dashboard fed three steps of every source, two seconds apart."""
    d = Dashboard(clock=clock)
    for source, describe in DESCRIBES.items():
        d.register_source(source, describe)
    for step in range(3):
        clock.t = 2.0 * step
        for f in (keyword_record, priming_record, format_record):
            d.write(f(step))
    return d
