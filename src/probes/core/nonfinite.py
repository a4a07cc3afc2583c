"""Non-finite model output: flag it in records, warn once, without stalling the device every step.

A reading whose logits are NaN (or +inf) at an item's positions stores NaN scores and rank 0 for
that item (:class:`probes.core.plan.ItemScores`) and a ``nonfinite`` flag in its record.
:class:`NonFiniteMonitor` turns the flags into one warning per probe naming the step and the items.
To avoid a device-to-host read right after each probe pass, a reading's flags are inspected when
the *next* reading arrives (or when training ends), by which time they have long been computed;
after the first warning the monitor stops looking.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Optional

import torch

__all__ = ["NonFiniteMonitor"]


class NonFiniteMonitor:
    """Warns once when a probe's readings contain non-finite model output.

    Args:
        probe: the probe's name for the message (e.g. ``"KeywordProbe[keyword]"``).
        names: the item names, in the order of the flags.
    """

    def __init__(self, probe: str, names: Sequence[str]) -> None:
        self.probe = probe
        self.names = list(names)
        self.warned = False
        self._pending: Optional[tuple[int, torch.Tensor]] = None

    def observe(self, step: int, flags: torch.Tensor) -> None:
        """Queue this reading's ``[n_items]`` bool flags; inspect the previous reading's."""
        if self.warned:
            return
        self.flush()
        self._pending = (int(step), flags.detach())

    def flush(self) -> None:
        """Inspect the queued flags now (call when training ends)."""
        pending, self._pending = self._pending, None
        if pending is None or self.warned:
            return
        step, flags = pending
        flags = flags.reshape(-1).cpu()
        if not bool(flags.any()):
            return
        bad = [self.names[i] if i < len(self.names) else str(i) for i in flags.nonzero().flatten().tolist()]
        shown = ", ".join(repr(b) for b in bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        self.warned = True
        warnings.warn(
            f"{self.probe}: the model returned non-finite logits (NaN or +inf) for {len(bad)} item(s) at step"
            f" {step}: {shown}. Their scores are recorded as NaN with rank 0 and flagged in `nonfinite`; check"
            " the learning rate, mixed precision and the loss for divergence. Warned once per probe.",
            RuntimeWarning,
            stacklevel=2,
        )
