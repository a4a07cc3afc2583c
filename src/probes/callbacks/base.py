"""Shared plumbing for probe callbacks: record emission, in-memory history, sink discovery."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from probes.model_reader import ModelReader
from probes.records import Record, RecordSink

__all__ = ["REFUSED_STRATEGIES", "ProbeCallback"]


#: Strategies a probe refuses in ``setup`` (matched by class name, subclasses included), and why.
REFUSED_STRATEGIES: dict[str, str] = {
    "FSDPStrategy": (
        "FSDP (version 1) all-gathers parameters only inside the forward of its wrapper units, and a probe"
        " calls the language model directly, so it could read sharded parameters (not verifiable without a GPU:"
        " Lightning runs FSDP only on CUDA)."
    ),
    "DeepSpeedStrategy": (
        "ZeRO stage 3 gathers parameters in hooks of the engine's forward, which a probe's direct call to the"
        " language model bypasses."
    ),
}


class ProbeCallback(Callback):
    """Base class for callbacks that emit :class:`~probes.records.Record` objects.

    Subclasses set ``self.source`` (unique per instance, used as the metric namespace and the
    ``state_key``), implement :meth:`describe`, and call :meth:`emit`. Sinks (the run log, the live
    console) subscribe themselves in their own ``setup`` by finding probe callbacks among
    ``trainer.callbacks``; a user can also call :meth:`subscribe` directly.

    Every emitted record is kept in :attr:`history` (tensors stay on their device) so tests and
    assertion helpers can read a callback without any sink.
    """

    source: str

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source or "/" in source:
            raise ValueError(
                f"Expected `name` to be a non-empty string without '/', got {source!r}. Pass e.g. name='keyword'."
            )
        self.source = source
        self.history: list[Record] = []
        self._sinks: list[RecordSink] = []

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.source}]"

    def describe(self) -> Mapping[str, Any]:
        """JSON-serialisable definition of what this probe measures."""
        return {"type": type(self).__name__, "source": self.source}

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

    def probe_shard(self, trainer: pl.Trainer) -> tuple[int, int]:
        """(rank, world size) over which to shard a probe set.

        Plain data parallelism (DDP) shards: each rank scores its slice and the slices are gathered.
        Sharded-parameter strategies run collectives inside the forward, so every rank must run the
        same forwards: there the probe set is not sharded. Under ``ModelParallelStrategy`` (FSDP2,
        ``fully_shard``) the reader all-gathers the parameters of sharded ancestors of the probed
        model itself (see :func:`probes.model_reader.fsdp2_ancestors`).

        Raises:
            ValueError: under a strategy whose probe forward is not known to be safe (see
                :data:`REFUSED_STRATEGIES`).
        """
        from lightning.pytorch.strategies import DDPStrategy

        self.check_strategy(trainer)
        if trainer.world_size > 1 and isinstance(trainer.strategy, DDPStrategy):
            return trainer.global_rank, trainer.world_size
        return 0, 1

    def check_strategy(self, trainer: pl.Trainer) -> None:
        """Refuse strategies under which a probe's forward pass could read sharded parameters.

        Raises:
            ValueError: the Trainer's strategy is (a subclass of) one of :data:`REFUSED_STRATEGIES`.
        """
        names = {cls.__name__ for cls in type(trainer.strategy).__mro__}
        for refused, why in REFUSED_STRATEGIES.items():
            if refused in names:
                raise ValueError(
                    f"{self.state_key} cannot run under {type(trainer.strategy).__name__}: {why} Use"
                    " DDPStrategy (strategy='ddp'; the probe set is sharded across ranks), or"
                    " ModelParallelStrategy with torch.distributed.fsdp.fully_shard (FSDP2), under which every"
                    " rank runs the same probe forward with the parameters all-gathered (docs/scaling.md)."
                )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Dry-run the probe's forward once (isolated, one row) before the first training step, so
        a model that does not take the probe's inputs fails now with a message naming ``model=``
        and ``logits_fn=``, not inside the first optimizer step."""
        reader = getattr(self, "reader", None)
        if isinstance(reader, ModelReader):
            try:
                reader.check(pl_module)
            except ValueError as err:
                raise ValueError(f"{self.state_key}: {err}") from err.__cause__

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

    def log_items(
        self, pl_module: pl.LightningModule, family: str, names: list[str], values: torch.Tensor, cap: int
    ) -> None:
        """Log ``values[i]`` as ``probes/<source>/<family>/<names[i]>`` for the first ``cap`` items
        (one unit per family; a ``/`` in a name becomes ``_`` so it does not nest the tag)."""
        if cap <= 0:
            return
        for i, name in enumerate(names[:cap]):
            tag = f"probes/{self.source}/{family}/{name.replace('/', '_')}"
            pl_module.log(tag, values[i].float(), on_step=True, on_epoch=False, batch_size=1)

    @staticmethod
    def reading_epoch(trainer: pl.Trainer) -> int:
        """The epoch of the weights being read: the last epoch that started.

        ``trainer.current_epoch`` counts *completed* epochs, so at ``on_train_end`` after a full
        epoch it is already one ahead of the epoch whose updates produced the final weights.
        """
        started = trainer.fit_loop.epoch_progress.current.started
        return max(0, started - 1) if started else trainer.current_epoch

    @staticmethod
    def gather_fn(trainer: pl.Trainer):  # type: ignore[no-untyped-def]
        """``tensor -> [world_size, *shape]`` through the trainer's strategy (all ranks must call)."""
        return lambda t: trainer.strategy.all_gather(t)

    @staticmethod
    def probe_callbacks(trainer: pl.Trainer) -> list[ProbeCallback]:
        """The probe callbacks of ``trainer`` (what sinks subscribe to).

        Raises:
            ValueError: two probes share a ``name``: their records would be mixed in one source.
        """
        probes = [cb for cb in trainer.callbacks if isinstance(cb, ProbeCallback)]  # type: ignore[attr-defined]
        seen: dict[str, ProbeCallback] = {}
        for probe in probes:
            other = seen.setdefault(probe.source, probe)
            if other is not probe:
                raise ValueError(
                    f"{type(other).__name__} and {type(probe).__name__} share the name {probe.source!r}; their"
                    " records would be mixed in one source. Give each probe a different `name=`."
                )
        return probes


class ScheduledProbe(ProbeCallback):
    """A probe that reads in ``on_before_optimizer_step`` every ``every_n_steps`` optimizer steps
    (once per step, also with several optimizers) and once more in ``on_train_end``.

    Subclasses implement :meth:`scheduled_reading` and call :meth:`mark_read` when they read; the
    step counters are checkpointed by :meth:`state_dict` (extend it with ``{**super().state_dict(),
    ...}``), with ``STATE_VERSION`` as the version key.
    """

    STATE_VERSION = 1

    def __init__(self, source: str, every_n_steps: int) -> None:
        super().__init__(source)
        if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps < 1:
            raise ValueError(f"Expected `every_n_steps` to be a positive int, got {every_n_steps!r}.")
        self.every_n_steps = every_n_steps
        self._last_step = -1
        self._n_readings = 0

    def scheduled_reading(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, final: bool) -> None:
        """Take one reading; ``final`` is True for the one in ``on_train_end``."""
        raise NotImplementedError

    def mark_read(self, step: int) -> None:
        self._last_step = step
        self._n_readings += 1

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps != 0:
            return
        self.scheduled_reading(trainer, pl_module, final=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self.scheduled_reading(trainer, pl_module, final=True)

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.STATE_VERSION, "last_step": self._last_step, "n_readings": self._n_readings}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version", 0)
        if version > self.STATE_VERSION:
            rank_zero_warn(
                f"{self.state_key}: checkpoint state version {version} is newer than this library's"
                f" {self.STATE_VERSION}."
            )
        self._last_step = int(state_dict.get("last_step", -1))
        self._n_readings = int(state_dict.get("n_readings", 0))
