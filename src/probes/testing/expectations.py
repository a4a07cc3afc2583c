"""Declarative expectations checked while training runs, and the callback that enforces them.

Each expectation is evaluated on every new record of the probe type it concerns (one host copy
of that record; nothing else is synchronised), by the same functions as the assertion helpers,
so a test and a live check agree on what "learned" or "collapsed" means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from probes.callbacks.base import ProbeCallback
from probes.records import Record
from probes.testing import assertions as A
from probes.testing.sources import SourceData

__all__ = [
    "Expectation",
    "ExpectationFailed",
    "KeywordLearned",
    "NoFormatCollapse",
    "PrimingBelow",
    "ProbeExpectations",
]

_STATE_VERSION = 1


class ExpectationFailed(AssertionError):
    """Raised by :class:`ProbeExpectations` with ``action="raise"``."""


@dataclass(frozen=True)
class Expectation:
    """Base: ``kind`` is the probe type it reads; :meth:`check` returns a failure message or None."""

    kind = ""

    @property
    def label(self) -> str:
        return type(self).__name__

    def check(self, data: SourceData) -> Optional[str]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class KeywordLearned(Expectation):
    """By optimizer step ``by_step``, P(keyword of ``pair`` | context) >= ``min_prob``."""

    pair: Union[str, int]
    by_step: int
    min_prob: float = 0.5
    by: A.By = "seq"
    kind = "KeywordProbe"

    @property
    def label(self) -> str:
        return f"KeywordLearned({self.pair!r}, by_step={self.by_step}, min_prob={self.min_prob})"

    def check(self, data: SourceData) -> Optional[str]:
        step = int(data.steps[-1])
        if step < self.by_step:
            return None
        try:
            A.assert_keyword_learned(_as_sources(data), self.pair, min_prob=self.min_prob, by=self.by)
        except AssertionError as e:
            return str(e)
        return None


@dataclass(frozen=True)
class PrimingBelow(Expectation):
    """S_prime (or ``metric``) of the chosen samples never exceeds ``max_value``."""

    max_value: float
    samples: Optional[tuple[Union[str, int], ...]] = None
    metric: str = "s_prime"
    kind = "PrimingProbe"

    @property
    def label(self) -> str:
        return f"PrimingBelow({self.metric} <= {self.max_value})"

    def check(self, data: SourceData) -> Optional[str]:
        try:
            A.assert_priming_below(_as_sources(data), self.max_value, samples=self.samples, metric=self.metric)
        except AssertionError as e:
            return str(e)
        return None


@dataclass(frozen=True)
class NoFormatCollapse(Expectation):
    """The format entropy stays >= ``min_entropy_bits`` and/or the dominant share <= ``max_dominant_share``."""

    min_entropy_bits: Optional[float] = 0.5
    max_dominant_share: Optional[float] = None
    kind = "FormatProbe"

    @property
    def label(self) -> str:
        return (
            f"NoFormatCollapse(min_entropy_bits={self.min_entropy_bits}, max_dominant_share={self.max_dominant_share})"
        )

    def check(self, data: SourceData) -> Optional[str]:
        try:
            A.assert_no_format_collapse(
                _as_sources(data), min_entropy_bits=self.min_entropy_bits, max_dominant_share=self.max_dominant_share
            )
        except AssertionError as e:
            return str(e)
        return None


def _as_sources(data: SourceData) -> dict[str, SourceData]:
    return {data.source: data}


def _single(record: Record, describe: Mapping[str, Any]) -> SourceData:
    metrics = {k: v.detach().cpu().numpy()[None] for k, v in record.tensors.items()}
    return SourceData(record.source, describe, np.array([record.step], dtype=np.int64), metrics)


class ProbeExpectations(Callback):
    """Checks expectations on every probe record during training and fails fast.

    The failing step's decision is agreed across ranks (any rank failing makes every rank act)
    at the end of that batch, through the strategy's ``reduce_boolean_decision``, called on
    every rank.

    Args:
        expectations: :class:`KeywordLearned`, :class:`PrimingBelow`, :class:`NoFormatCollapse`
            (or your own :class:`Expectation` subclasses).
        action: ``"raise"`` (:class:`ExpectationFailed` at the failing step), ``"stop"`` (ask the
            trainer to stop), or ``"warn"`` (warn once per expectation and continue).
        source: only read records of this probe source (default: every source of the right type).

    Raises:
        ValueError: no expectations, an unknown action, or an object that is not an Expectation.

    Example::

        ProbeExpectations([KeywordLearned("sand", by_step=50, min_prob=0.5)], action="raise")
    """

    def __init__(
        self,
        expectations: Sequence[Expectation],
        *,
        action: Literal["raise", "stop", "warn"] = "raise",
        source: Optional[str] = None,
    ) -> None:
        expectations = list(expectations)
        if not expectations:
            raise ValueError("Expected at least one expectation, got none.")
        for e in expectations:
            if not isinstance(e, Expectation):
                raise ValueError(f"Expected Expectation objects (e.g. KeywordLearned(...)), got {e!r}.")
        if action not in ("raise", "stop", "warn"):
            raise ValueError(f"Expected `action` to be 'raise', 'stop' or 'warn', got {action!r}.")
        self.expectations = expectations
        self.action = action
        self.source = source
        self.failures: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._describes: dict[str, Mapping[str, Any]] = {}
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        return f"ProbeExpectations[{self.source or '*'}]"

    # --- sink protocol -------------------------------------------------------------------------
    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        self._describes[source] = describe

    def write(self, record: Record) -> None:
        if self.source is not None and record.source != self.source:
            return
        describe = self._describes.get(record.source, {})
        relevant = [e for e in self.expectations if e.kind == describe.get("type")]
        if not relevant:
            return
        data = _single(record, describe)
        for e in relevant:
            message = e.check(data)
            if message is not None:
                failure = {"expectation": e.label, "step": record.step, "source": record.source, "message": message}
                self._pending.append(failure)
                self.failures.append(failure)

    def flush(self) -> None:
        return None

    # --- Lightning hooks -----------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        probes = ProbeCallback.probe_callbacks(trainer)
        if not probes:
            raise ValueError("ProbeExpectations found no probe callback in the Trainer; add KeywordProbe etc.")
        for cb in probes:
            cb.subscribe(self)

    def _decide(self, trainer: pl.Trainer) -> None:
        failed = bool(self._pending)
        if trainer.world_size > 1:
            failed = bool(trainer.strategy.reduce_boolean_decision(failed, all=False))
        if not failed:
            return
        pending, self._pending = self._pending, []
        first = (
            pending[0]
            if pending
            else {
                "expectation": "another rank's expectation",
                "step": trainer.global_step,
                "message": "an expectation failed on another rank",
            }
        )
        text = f"Expectation {first['expectation']} failed at step {first['step']}:\n{first['message']}"
        if self.action == "raise":
            raise ExpectationFailed(text)
        if self.action == "stop":
            trainer.should_stop = True
            rank_zero_warn(text + "\nStopping training.")
            return
        for f in pending:
            if f["expectation"] not in self._warned:
                self._warned.add(f["expectation"])
                rank_zero_warn(f"Expectation {f['expectation']} failed at step {f['step']}:\n{f['message']}")

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._decide(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Probes take their final reading in their own on_train_end; check it if it came first,
        # otherwise `teardown` below catches it.
        self._decide(trainer)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._pending and self.action == "raise":
            pending, self._pending = self._pending, []
            raise ExpectationFailed(
                f"Expectation {pending[0]['expectation']} failed at step {pending[0]['step']}:\n{pending[0]['message']}"
            )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"version": _STATE_VERSION, "failures": [dict(f) for f in self.failures]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.failures = [dict(f) for f in state_dict.get("failures", [])]
