"""Format-collapse detection, modelled on Lightning's ``EarlyStopping``.

A distribution has *collapsed* when, for ``patience`` consecutive records, its dominant format
holds a share ``>= tau`` or its normalized entropy is ``<= eps`` (either test may be switched off
with ``None``), with the same dominant format throughout the streak. Leaving the collapsed state
takes ``patience`` consecutive records that do not qualify (hysteresis), so a share hovering at
``tau`` does not flicker between states; every new onset after such a recovery is acted on again.

The decision is two small pure functions, easy to test and to agree on across ranks:

* :func:`collapse_condition` says whether one record meets the criterion (None: no evidence, e.g.
  an empty rollout batch or only unclassified outputs);
* :func:`evaluate_collapse` advances an immutable :class:`CollapseState` by one record and returns
  ``(collapsed, reason, new_state)``, like ``EarlyStopping._evaluate_stopping_criteria`` returns
  ``(should_stop, reason)``. A record without evidence leaves the state unchanged.

The callback computes the condition locally, agrees on it across ranks with
``trainer.strategy.reduce_boolean_decision`` (on every rank), then calls :func:`evaluate_collapse`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

__all__ = [
    "CollapseCriterion",
    "CollapseState",
    "FormatCollapseError",
    "FormatCollapseWarning",
    "collapse_condition",
    "evaluate_collapse",
]

_STATE_VERSION = 1


class FormatCollapseError(RuntimeError):
    """Raised by :class:`~probes.formats.probe.FormatProbe` with ``on_collapse="raise"``."""


class FormatCollapseWarning(UserWarning):
    """Warned by :class:`~probes.formats.probe.FormatProbe` with ``on_collapse="warn"``."""


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class CollapseCriterion:
    """When a format distribution counts as collapsed.

    Args:
        tau: dominant-share threshold in ``(0, 1]``: a record meets the criterion when the dominant
            format's share is ``>= tau``. None disables this test.
        eps: normalized-entropy threshold in ``[0, 1)``: a record meets the criterion when the
            normalized entropy is ``<= eps``. None disables this test.
        patience: consecutive qualifying records (same dominant format) before collapse is declared.
        min_classified: a record whose classified share (``1 - unclassified``) is below this is
            no evidence either way (the state is unchanged): when nearly every output is "other",
            the shares among the few classified ones say nothing about a collapse.

    Raises:
        ValueError: both thresholds None, a threshold out of range, or ``patience < 1``.

    Example::

        CollapseCriterion(tau=0.95, eps=0.2, patience=3)
    """

    tau: Optional[float] = 0.9
    eps: Optional[float] = None
    patience: int = 3
    min_classified: float = 0.05

    def __post_init__(self) -> None:
        if self.tau is None and self.eps is None:
            raise ValueError("Expected at least one of `tau` or `eps` to be set, got both None.")
        if self.tau is not None and not (_is_real(self.tau) and 0.0 < self.tau <= 1.0):
            raise ValueError(f"Expected `tau` (dominant share threshold) in (0, 1], got {self.tau!r}. E.g. tau=0.9.")
        if self.eps is not None and not (_is_real(self.eps) and 0.0 <= self.eps < 1.0):
            raise ValueError(
                f"Expected `eps` (normalized entropy threshold) in [0, 1), got {self.eps!r}. E.g. eps=0.2."
            )
        if not isinstance(self.patience, int) or isinstance(self.patience, bool) or self.patience < 1:
            raise ValueError(f"Expected `patience` to be a positive int, got {self.patience!r}.")
        if not (_is_real(self.min_classified) and 0.0 <= self.min_classified < 1.0):
            raise ValueError(f"Expected `min_classified` in [0, 1), got {self.min_classified!r}. E.g. 0.05.")

    def describe(self) -> str:
        """The thresholds in words, e.g. ``"dominant share >= tau=0.9 for patience=3 records"``."""
        tests = []
        if self.tau is not None:
            tests.append(f"dominant share >= tau={self.tau:g}")
        if self.eps is not None:
            tests.append(f"normalized entropy <= eps={self.eps:g}")
        return f"{' or '.join(tests)} for patience={self.patience} consecutive records"


@dataclass(frozen=True)
class CollapseState:
    """The detector's memory between records (immutable; :func:`evaluate_collapse` returns a new one).

    Attributes:
        streak: consecutive qualifying records so far.
        streak_format: dominant format index of the current streak (-1 when none).
        streak_start: step of the first record of the current streak (-1 when none).
        collapsed: whether the distribution is collapsed now (``streak >= patience``).
        first_step: step at which collapse was first declared (-1: never).
        first_format: format index it first collapsed to (-1: never).
        first_share: dominant share at ``first_step`` (-1.0: never).
        first_streak_start: step at which that first qualifying streak began (-1: never).
        onsets: how many times the state went from not collapsed to collapsed.
        recovery: while collapsed, consecutive records that did not qualify (``patience`` of
            them end the collapse).
    """

    streak: int = 0
    streak_format: int = -1
    streak_start: int = -1
    collapsed: bool = False
    first_step: int = -1
    first_format: int = -1
    first_share: float = -1.0
    first_streak_start: int = -1
    onsets: int = 0
    recovery: int = 0

    def state_dict(self) -> dict[str, Any]:
        """Primitives only, with a version key (loads with ``torch.load(weights_only=True)``)."""
        return {"version": _STATE_VERSION, **asdict(self)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> CollapseState:
        """Inverse of :meth:`state_dict`; unknown keys are ignored, missing ones take defaults."""
        fields = {k: state[k] for k in cls.__dataclass_fields__ if k in state}
        kinds = {"collapsed": bool, "first_share": float}
        return cls(**{k: kinds.get(k, int)(v) for k, v in fields.items()})


def collapse_condition(share: float, norm_entropy: float, criterion: CollapseCriterion) -> Optional[bool]:
    """Whether one record meets ``criterion``; None when it carries no evidence (NaN values).

    Args:
        share: the dominant format's share.
        norm_entropy: the normalized entropy of the distribution.
        criterion: the thresholds.
    """
    tests: list[bool] = []
    if criterion.tau is not None and not math.isnan(share):
        tests.append(share >= criterion.tau)
    if criterion.eps is not None and not math.isnan(norm_entropy):
        tests.append(norm_entropy <= criterion.eps)
    if not tests:
        return None
    return any(tests)


def _name(names: Optional[Sequence[str]], index: int) -> str:
    if names is not None and 0 <= index < len(names):
        return repr(names[index])
    return f"#{index}"


def evaluate_collapse(
    state: CollapseState,
    condition: Optional[bool],
    *,
    step: int,
    dominant: int,
    share: float,
    norm_entropy: float,
    criterion: CollapseCriterion,
    names: Optional[Sequence[str]] = None,
    basis: str = "the outputs",
) -> tuple[bool, str, CollapseState]:
    """Advance the detector by one record.

    Args:
        state: the state after the previous record.
        condition: whether this record meets the criterion (from :func:`collapse_condition`, agreed
            across ranks); None for a record without evidence, which leaves ``state`` unchanged.
        step: the record's step.
        dominant: index of the dominant format.
        share: its share.
        norm_entropy: the normalized entropy.
        criterion: the thresholds (for ``patience`` and the message).
        names: format names, for the message.
        basis: what the share is a share of, for the message (e.g. ``"the classified outputs"``).

    Returns:
        ``(collapsed, reason, new_state)``: ``collapsed`` is True only on the record where collapse
        is declared (the onset), ``reason`` says why in words (format, share, step, thresholds),
        and ``new_state.collapsed`` is the detector's state after this record.
    """
    stats = f"dominant share {share:.3f}, normalized entropy {norm_entropy:.3f}"
    if condition is None:
        return False, f"No evidence at step {step} (no classified outputs); collapse state unchanged.", state
    recovered = ""
    if state.collapsed:
        held = _name(names, state.streak_format)
        if condition and dominant == state.streak_format:
            new = replace(state, streak=state.streak + 1, recovery=0)
            return False, f"Still collapsed to format {held} at step {step} ({stats}, {new.streak} records).", new
        if state.recovery + 1 < criterion.patience:
            new = replace(state, recovery=state.recovery + 1)
            reason = (
                f"Still collapsed to format {held} at step {step} ({stats}); {new.recovery}/{criterion.patience}"
                " records toward recovery."
            )
            return False, reason, new
        state = replace(state, collapsed=False, streak=0, streak_format=-1, streak_start=-1, recovery=0)
        recovered = f"Recovered from the collapse to format {held} at step {step}. "
    if not condition:
        new = replace(state, streak=0, streak_format=-1, streak_start=-1, collapsed=False, recovery=0)
        return False, f"{recovered}No collapse at step {step}: {stats}; criterion is {criterion.describe()}.", new
    if state.streak > 0 and dominant == state.streak_format:
        streak, start = state.streak + 1, state.streak_start
    else:
        streak, start = 1, step
    collapsed = streak >= criterion.patience
    new = replace(state, streak=streak, streak_format=dominant, streak_start=start, collapsed=collapsed)
    fmt = _name(names, dominant)
    if collapsed and not state.collapsed:
        new = replace(new, onsets=state.onsets + 1)
        if state.first_step < 0:
            new = replace(
                new, first_step=step, first_format=dominant, first_share=float(share), first_streak_start=start
            )
        reason = (
            f"Format collapse at step {step}: format {fmt} holds a share of {share:.3f} of {basis}"
            f" (normalized entropy {norm_entropy:.3f}) for {streak} consecutive records since step {start};"
            f" criterion: {criterion.describe()}."
        )
        return True, reason, new
    return (
        False,
        f"{recovered}Format {fmt} meets the criterion at step {step} ({stats}); {streak}/{criterion.patience} records.",
        new,
    )
