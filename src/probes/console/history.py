"""A bounded history that covers the whole run at decreasing resolution."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["History"]

T = TypeVar("T")


class History(Generic[T]):
    """Keeps at most ``capacity`` points spread over the whole run, plus the latest point.

    Every point is kept until ``capacity`` is reached; then every other kept point is dropped and
    from then on only every second incoming point is kept (the stride doubles each time). Memory
    stays bounded however long the run, and a sparkline still shows the run from its start.

    Args:
        capacity: most points kept (at least 2).

    Raises:
        ValueError: if ``capacity`` is smaller than 2.
    """

    def __init__(self, capacity: int = 64) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 2:
            raise ValueError(f"Expected `history` to be an int >= 2, got {capacity!r}.")
        self.capacity = capacity
        self.steps: list[int] = []
        self.values: list[T] = []
        self.stride = 1
        self._seen = 0
        self._latest: tuple[int, T] | None = None
        self._latest_kept = False

    def __len__(self) -> int:
        return len(self.series()[0])

    def append(self, step: int, value: T) -> None:
        """Add the reading taken at ``step``."""
        self._latest = (step, value)
        self._latest_kept = self._seen % self.stride == 0
        if self._latest_kept:
            self.steps.append(step)
            self.values.append(value)
            if len(self.values) >= self.capacity:
                self._latest_kept = (len(self.values) - 1) % 2 == 0
                self.steps = self.steps[::2]
                self.values = self.values[::2]
                self.stride *= 2
        self._seen += 1

    def series(self) -> tuple[list[int], list[T]]:
        """Kept steps and values, oldest first, always ending with the latest point."""
        if self._latest is None:
            return [], []
        if self._latest_kept:
            return list(self.steps), list(self.values)
        step, value = self._latest
        return [*self.steps, step], [*self.values, value]
