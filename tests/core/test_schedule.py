"""ReadSchedule: the steps each schedule reads at, against hand-written lists and a slow reference."""

from __future__ import annotations

import math

import pytest

from probes.core.schedule import ReadSchedule, as_schedule


def _log_reference(step: int, per_decade: int) -> bool:
    """Slow reference: read at 0 and 1, then whenever the bin floor(k * log10(t)) changes."""
    if step in (0, 1):
        return True
    bins = [math.floor(per_decade * math.log10(t) + 1e-9) for t in (step - 1, step)]
    return bins[1] > bins[0]


def test_every_n_steps_reads_multiples() -> None:
    schedule = ReadSchedule(3)
    assert [t for t in range(12) if schedule.due(t)] == [0, 3, 6, 9]


def test_log_spaced_steps_match_hand_list_and_reference() -> None:
    schedule = ReadSchedule(per_decade=8)
    due = [t for t in range(45) if schedule.due(t)]
    # by hand: 8 * log10(t) crosses an integer at t = 10**(k/8): 1.33, 1.78, 2.37, 3.16, 4.22, 5.62, 7.50, 10,
    # 13.3, 17.8, 23.7, 31.6, 42.2 -> first integer steps 2, 3, 4, 5, 6, 8, 10, 14, 18, 24, 32, 43
    assert due == [0, 1, 2, 3, 4, 5, 6, 8, 10, 14, 18, 24, 32, 43]
    assert all(schedule.due(t) == _log_reference(t, 8) for t in range(20_000))
    n_per_decade = sum(schedule.due(t) for t in range(1000, 10_000))
    assert n_per_decade == 8  # sparse later: 8 readings per tenfold


def test_wants_reads_each_step_once_and_final_only_if_unread() -> None:
    schedule = ReadSchedule(2)
    assert schedule.wants(4, final=False)
    schedule.mark(4)
    assert not schedule.wants(4, final=False) and not schedule.wants(4, final=True)
    assert not schedule.wants(5, final=False) and schedule.wants(5, final=True)
    assert schedule.state_dict() == {"last_step": 4, "n_readings": 1}
    fresh = ReadSchedule(2)
    fresh.load_state_dict(schedule.state_dict())
    assert (fresh.last_step, fresh.n_readings) == (4, 1)


def test_as_schedule_copies_and_checks() -> None:
    shared = ReadSchedule(per_decade=4)
    a, b = as_schedule(shared), as_schedule(shared)
    a.mark(3)
    assert b.last_step == -1 and a.per_decade == b.per_decade == 4  # no shared counters
    assert as_schedule(5).every_n_steps == 5
    with pytest.raises(ValueError, match="`every_n_steps` to be a positive int, got 0"):
        as_schedule(0)
    with pytest.raises(ValueError, match="either `every_n_steps` or `per_decade`"):
        ReadSchedule(2, per_decade=3)
    with pytest.raises(ValueError, match="`per_decade` to be a positive int"):
        ReadSchedule(per_decade=0)
    assert ReadSchedule(per_decade=4).describe() == {"every_n_steps": None, "schedule": {"per_decade": 4}}
