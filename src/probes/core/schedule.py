"""``ReadSchedule``: at which optimizer steps a probe reads, and the counters that say what it read.

One component for every probe: every ``n`` steps, or log-spaced (dense early, where priming and
format collapse happen, sparse later), plus one final reading when training ends unless the last
step was already read. The decision depends on the step alone, so every data-parallel rank takes
the same one without a collective. The counters are part of each probe's checkpointed state.
"""

from __future__ import annotations

import math
from typing import Any, Union

from probes.core.checks import positive_int

__all__ = ["ReadSchedule", "as_schedule"]


class ReadSchedule:
    """When a probe reads.

    Args:
        every_n_steps: read at every step ``t`` with ``t % every_n_steps == 0``.
        per_decade: instead, read log-spaced: step 0, and the first step of each of ``per_decade``
            equal slices of every decade of ``log10(t)`` (with 8: steps 0-6, 8, 10, 12, 14, 17,
            20, 24, 29, 34, 40, ... then about 8 readings per tenfold of steps). Exclusive with
            ``every_n_steps``.

    Raises:
        ValueError: a count that is not a positive int, or both given.

    Example::

        KeywordProbe(pairs, tok, every_n_steps=ReadSchedule(per_decade=8))
    """

    def __init__(self, every_n_steps: int | None = None, *, per_decade: int | None = None) -> None:
        if every_n_steps is not None and per_decade is not None:
            raise ValueError("Pass either `every_n_steps` or `per_decade` to ReadSchedule, not both.")
        self.every_n_steps = positive_int(every_n_steps, "every_n_steps") if per_decade is None else None
        if per_decade is None and every_n_steps is None:
            self.every_n_steps = 1
        self.per_decade = positive_int(per_decade, "per_decade") if per_decade is not None else None
        self.last_step = -1  # step of the last reading
        self.n_readings = 0

    def __repr__(self) -> str:
        if self.per_decade is not None:
            return f"ReadSchedule(per_decade={self.per_decade})"
        return f"ReadSchedule(every_n_steps={self.every_n_steps})"

    def due(self, step: int) -> bool:
        """Whether ``step`` is a scheduled reading step (whatever was read before)."""
        if self.per_decade is None:
            return step % self.every_n_steps == 0  # type: ignore[operator]
        if step <= 1:
            return step >= 0
        k = self.per_decade
        return math.floor(k * math.log10(step) + 1e-9) > math.floor(k * math.log10(step - 1) + 1e-9)

    def wants(self, step: int, *, final: bool) -> bool:
        """Whether a probe on this schedule reads now: a due step not read yet, or the final reading
        of a step not read yet."""
        if step == self.last_step:
            return False
        return final or self.due(step)

    def mark(self, step: int) -> None:
        """Record a reading at ``step``."""
        self.last_step = step
        self.n_readings += 1

    def describe(self) -> dict[str, Any]:
        """The ``describe()`` entries of a probe on this schedule (``every_n_steps`` is null when
        log-spaced)."""
        if self.per_decade is None:
            return {"every_n_steps": self.every_n_steps}
        return {"every_n_steps": None, "schedule": {"per_decade": self.per_decade}}

    def state_dict(self) -> dict[str, int]:
        return {"last_step": self.last_step, "n_readings": self.n_readings}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", -1))
        self.n_readings = int(state.get("n_readings", 0))


def as_schedule(value: Union[int, ReadSchedule]) -> ReadSchedule:
    """A probe's ``every_n_steps=`` argument as a fresh :class:`ReadSchedule` (an int ``n`` reads every
    ``n`` steps; a ReadSchedule is copied so two probes never share counters).

    Raises:
        ValueError: neither a positive int nor a ReadSchedule.
    """
    if isinstance(value, ReadSchedule):
        return ReadSchedule(per_decade=value.per_decade) if value.per_decade else ReadSchedule(value.every_n_steps)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Expected `every_n_steps` to be a positive int, got {value!r} (or pass a ReadSchedule).")
    return ReadSchedule(value)
