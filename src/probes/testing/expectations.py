"""Declarative expectations checked while training runs, and the callback that enforces them.

Each expectation is evaluated on every new record of the probe type it concerns (one host copy
of that record; nothing else is synchronised), by the same functions as the assertion helpers,
so a test and a live check agree on what "learned" or "collapsed" means.

The expectations about one probe type are declared by its probe kind, in its own package
(:mod:`probes.core.kinds`; e.g. :class:`KeywordLearned` in ``probes.keyword.view``); attribute
access on this module finds those of every registered kind by class name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

# the built-in kinds' expectations, importable from here as they always were
from probes.choice.view import AboveChance, Calibrated
from probes.core import kinds
from probes.core.kinds import Expectation
from probes.core.records import Record
from probes.formats.view import NoFormatCollapse
from probes.ifd.view import FlaggedAtMost, IFDBelow
from probes.integrations.lightning import ProbeCallback
from probes.keyword.view import KeywordLearned
from probes.priming.view import PrimingBelow
from probes.testing.collect import SourceData

__all__ = [
    "AboveChance",
    "Calibrated",
    "Expectation",
    "ExpectationFailed",
    "FlaggedAtMost",
    "IFDBelow",
    "KeywordLearned",
    "NoFormatCollapse",
    "PrimingBelow",
    "ProbeExpectations",
]

_STATE_VERSION = 1


class ExpectationFailed(AssertionError):
    """Raised by :class:`ProbeExpectations` with ``action="raise"``."""


def __getattr__(name: str) -> Any:
    """An expectation class a registered probe kind declares, by its class name."""
    for kind in kinds.kinds():
        for cls in kind.expectations:
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module 'probes.testing.expectations' has no attribute {name!r}")


def _single(record: Record, describe: Mapping[str, Any]) -> SourceData:
    metrics = {k: v.detach().cpu().numpy()[None] for k, v in record.tensors.items()}
    return SourceData(record.source, describe, np.array([record.step], dtype=np.int64), metrics)


class ProbeExpectations(Callback):
    """Checks expectations on every probe record during training and fails fast.

    The failing step's decision is agreed across ranks (any rank failing makes every rank act)
    at the end of that batch, through the strategy's ``reduce_boolean_decision``, called on
    every rank.

    Args:
        expectations: :class:`Expectation` objects: those of the probe kinds
            (:class:`KeywordLearned`, :class:`PrimingBelow`, :class:`NoFormatCollapse`,
            :class:`AboveChance`, :class:`Calibrated`, :class:`IFDBelow`, :class:`FlaggedAtMost`),
            or your own subclasses; each reads the sources of the probe type its ``kind`` names.
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
