"""``Probe``: the framework-free base of every probe, and ``ScoringProbe`` for those that score text.

A probe is driven by events, each with a :class:`~probes.core.context.TrainingContext`:

* :meth:`Probe.attach` once before training (bind to the model, validate, register requests);
* :meth:`Probe.check` once before the first step (a dry forward);
* :meth:`Probe.observe_batch` for every training batch, :meth:`Probe.observe_outputs` after it;
* :meth:`Probe.before_optimizer_step` before every optimizer step ``t`` (reads when the schedule
  says so, recorded as step ``t``);
* :meth:`Probe.training_ended` once after the last step (a final reading unless that step was read).

It emits :class:`~probes.core.records.Record` objects to its sinks and keeps them in
:attr:`Probe.history`; its state is primitive and versioned (``state_dict``). Nothing here imports a
training framework: ``probes.integrations`` adapts these events to Lightning and to plain loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Optional, Union

import torch
from torch import nn

from probes.core.context import TrainingContext
from probes.core.hub import Hubs, ScoringHub
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores, TokenizedItem
from probes.core.reader import Gather, ModelReader
from probes.core.records import Record, RecordHistory, RecordSink
from probes.core.schedule import ReadSchedule, as_schedule

__all__ = ["Probe", "ScoringProbe", "probe_list"]


class Probe:
    """Base class of probes: a named record source with a read schedule and versioned state.

    Subclasses implement :meth:`take_reading` (and :meth:`describe`), and extend the event methods
    they need. ``kind`` names the probe type in run logs and in the probe-kind registry; it defaults
    to the class name.

    Args:
        name: the record source (unique per instance; the metric namespace and ``state_key``).
        every_n_steps: an int ``n`` (read every ``n`` optimizer steps) or a
            :class:`~probes.core.schedule.ReadSchedule`.

    Raises:
        ValueError: a name that is empty or holds ``/``; a bad schedule.
    """

    kind: ClassVar[Optional[str]] = None
    STATE_VERSION: ClassVar[int] = 1
    #: whether readings forward the model (adapters refuse unsafe sharding strategies for these)
    reads_model: ClassVar[bool] = True
    #: records kept in :attr:`history` (the oldest are dropped past it; the run log keeps all);
    #: set ``probe.history.limit`` per instance, None for no cap
    HISTORY_LIMIT: ClassVar[Optional[int]] = 10_000

    def __init__(self, name: str, every_n_steps: Union[int, ReadSchedule] = 1) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"Expected `name` to be a non-empty string without '/', got {name!r}. Pass e.g. name='keyword'."
            )
        self.source = name
        self.schedule = as_schedule(every_n_steps)
        self.history: list[Record] = RecordHistory(self.HISTORY_LIMIT)
        self._sinks: list[RecordSink] = []
        self._last_event_step = -1  # one reading per optimizer step, also with several optimizers

    # --- identity and description ---------------------------------------------------------------

    @classmethod
    def kind_name(cls) -> str:
        """The probe type's name in run logs (``describe()["type"]``)."""
        return cls.kind or cls.__name__

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.source}]"

    @property
    def every_n_steps(self) -> Optional[int]:
        return self.schedule.every_n_steps

    def describe(self) -> Mapping[str, Any]:
        """JSON-serialisable definition of what this probe measures."""
        return {"type": self.kind_name(), "source": self.source}

    # --- records --------------------------------------------------------------------------------

    def subscribe(self, sink: RecordSink) -> None:
        """Send every future record to ``sink`` (idempotent)."""
        if any(s is sink for s in self._sinks):
            return
        self._sinks.append(sink)
        sink.register_source(self.source, self.describe())

    def emit(self, step: int, tensors: Mapping[str, torch.Tensor], *, epoch: int = -1) -> Record:
        record = Record(step=int(step), source=self.source, tensors=dict(tensors), epoch=epoch)
        self.history.append(record)
        for sink in self._sinks:
            sink.write(record)
        return record

    def series(self, name: str) -> tuple[list[int], torch.Tensor]:
        """Steps and stacked values (on the host) of metric ``name`` from :attr:`history`."""
        rows = [r for r in self.history if name in r.tensors]
        if not rows:
            known = sorted({k for r in self.history for k in r.tensors})
            raise KeyError(f"No records of metric {name!r} in {self.source!r}; known: {known}")
        values = torch.stack([r.tensors[name].detach() for r in rows]).cpu()
        return [r.step for r in rows], values

    # --- loggers ----------------------------------------------------------------------------------

    @staticmethod
    def items_to_log(log_items: object) -> int:
        """How many items ``log_items`` sends to the loggers: 0 (off), 64 for True, or the int given.

        Raises:
            ValueError: anything but a bool or an int >= 0.
        """
        if isinstance(log_items, bool):
            return 64 if log_items else 0
        if isinstance(log_items, int) and log_items >= 0:
            return log_items
        raise ValueError(
            f"Expected `log_items` to be a bool or an int >= 0 (how many items to log), got {log_items!r}."
        )

    def log_items(self, ctx: TrainingContext, family: str, names: list[str], values: torch.Tensor, cap: int) -> None:
        """Log ``values[i]`` as ``probes/<source>/<family>/<names[i]>`` for the first ``cap`` items
        (one unit per family; a ``/`` in a name becomes ``_`` so it does not nest the tag)."""
        if cap <= 0 or ctx.log is None:
            return
        for i, name in enumerate(names[:cap]):
            ctx.log(f"probes/{self.source}/{family}/{name.replace('/', '_')}", values[i].float())

    # --- events -----------------------------------------------------------------------------------

    def attach(self, ctx: TrainingContext) -> None:
        """Before training: bind to the model in ``ctx.root`` and validate against it."""

    def check(self, ctx: TrainingContext) -> None:
        """Before the first step: a dry run that fails early on a model the probe cannot read."""

    def observe_batch(self, ctx: TrainingContext, batch: Any) -> None:
        """A training batch, before its forward (e.g. to count exposures)."""

    def observe_outputs(self, ctx: TrainingContext, outputs: Any) -> None:
        """What the training step returned, after it (e.g. RL rollouts)."""

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        """Before update ``ctx.step + 1``: read when the schedule says so (once per step)."""
        if ctx.step == self._last_event_step:
            return
        self._last_event_step = ctx.step
        if self.schedule.wants(ctx.step, final=False):
            self.take_reading(ctx)

    def training_ended(self, ctx: TrainingContext) -> None:
        """After the last step: a final reading unless that step was read."""
        if self.schedule.wants(ctx.step, final=True):
            self.take_reading(ctx)

    def take_reading(self, ctx: TrainingContext) -> None:
        """Read the model now and emit a record at ``ctx.step`` (call :meth:`ReadSchedule.mark`)."""
        raise NotImplementedError

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.STATE_VERSION, **self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version", 0)
        if version > self.STATE_VERSION:
            warnings.warn(
                f"{self.state_key}: checkpoint state version {version} is newer than this library's"
                f" {self.STATE_VERSION}.",
                stacklevel=2,
            )
        self.schedule.load_state_dict(state_dict)


class ScoringProbe(Probe):
    """A probe whose readings score text continuations through a shared scoring hub.

    Subclasses set :attr:`requests` (tokenized items, fixed for the probe's life) in ``__init__`` and
    call :meth:`read_scores` in :meth:`take_reading`.

    Args:
        name, every_n_steps: as :class:`Probe`.
        scoring: the :class:`~probes.core.options.ScoringOptions` (probes with equal options share
            one hub and one set of forwards per step).
    """

    def __init__(self, name: str, every_n_steps: Union[int, ReadSchedule], scoring: ScoringOptions) -> None:
        super().__init__(name, every_n_steps)
        self.scoring = scoring
        self.requests: list[TokenizedItem] = []
        self._hub: Optional[ScoringHub] = None
        self._own_hub: Optional[ScoringHub] = None

    def attach(self, ctx: TrainingContext) -> None:
        self._hub = ctx.hubs.get(self.scoring)
        self._hub.register(self)
        self._hub.validate(self, ctx.root)

    def check(self, ctx: TrainingContext) -> None:
        hub = self._hub or self._standalone()
        try:
            hub.check(self, ctx.root, ctx.shard)
        except ValueError as err:
            raise ValueError(f"{self.state_key}: {err}") from err.__cause__

    def read_scores(self, ctx: TrainingContext) -> ItemScores:
        """Scores of :attr:`requests` at this reading, from the shared hub (one pass per step for
        every probe due now)."""
        hub = self._hub if self._hub is not None else self._standalone()
        return hub.scores(self, ctx)

    def _standalone(self) -> ScoringHub:
        if self._own_hub is None:
            self._own_hub = Hubs().get(self.scoring)
            self._own_hub.register(self)
        return self._own_hub

    @property
    def reader(self) -> ModelReader:
        """The reader of this probe's distinct items alone, in its hub once attached (what
        :meth:`read` runs, and what a reading runs when no other probe of the hub reads then)."""
        return (self._hub or self._standalone()).reader_for([self])

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> ItemScores:
        """Score every request against ``module`` now, outside any training loop (one score per
        request, in order, also where requests repeat).

        Args:
            module: the module holding the language model (see ``model=``).
            gather: only when the reader is sharded across ranks.
        """
        return (self._hub or self._standalone()).read_alone(self, module, gather)


def probe_list(probes: Iterable[Probe]) -> list[Probe]:
    """``probes`` as a list, checked for an adapter that drives them.

    Raises:
        ValueError: no probes, something that is not a :class:`Probe`, or two probes with one name
            (their records would be mixed in one source).
    """
    out = list(probes)
    if not out or not all(isinstance(p, Probe) for p in out):
        raise ValueError(f"Expected at least one probe (instances of probes.core.probe.Probe), got {probes!r}.")
    names = [p.source for p in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"Probes share the name(s) {clash}; give each probe a different `name=`.")
    return out
