"""The Lightning adapter: Trainer hooks drive the framework-free probes of :mod:`probes.core.probe`.

:class:`ProbeCallback` is a :class:`~lightning.pytorch.callbacks.Callback` mixin that turns each
hook into the probe event of the same meaning, with a :class:`~probes.core.context.TrainingContext`
built from the Trainer (step, epoch, data-parallel layout, collectives, loggers).
:func:`lightning_callback` makes the Lightning class of a probe class: ``probes.KeywordProbe`` is
``lightning_callback(probes.keyword.probe.KeywordProbe)``, so a Lightning user passes probes to
``Trainer(callbacks=[...])`` as before while a plain loop drives the same objects.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from probes.core.context import TrainingContext
from probes.core.hub import Hubs
from probes.core.probe import Probe

__all__ = [
    "REFUSED_STRATEGIES",
    "LightningHooks",
    "ProbeCallback",
    "lightning_callback",
    "probe_callbacks",
    "reading_epoch",
]


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

# the scoring hubs of each Trainer: the probes of one fit share them (one set of forwards per step)
_HUBS: weakref.WeakKeyDictionary[pl.Trainer, Hubs] = weakref.WeakKeyDictionary()


def _hubs_of(trainer: pl.Trainer) -> Hubs:
    """The scoring hubs shared by the probes of ``trainer`` (created on first use)."""
    try:
        hubs = _HUBS.get(trainer)
        if hubs is None:
            hubs = _HUBS[trainer] = Hubs()
    except TypeError:  # an object that cannot be weakly referenced (a stand-in trainer): no sharing
        hubs = Hubs()
    return hubs


def reading_epoch(trainer: pl.Trainer) -> int:
    """The epoch of the weights being read: the last epoch that started.

    ``trainer.current_epoch`` counts *completed* epochs, so at ``on_train_end`` after a full epoch it
    is already one ahead of the epoch whose updates produced the final weights.
    """
    started = trainer.fit_loop.epoch_progress.current.started
    return max(0, started - 1) if started else trainer.current_epoch


def probe_callbacks(trainer: pl.Trainer) -> list[Probe]:
    """The probes among ``trainer.callbacks`` (what sinks subscribe to).

    Raises:
        ValueError: two probes share a ``name``: their records would be mixed in one source.
    """
    probes = [cb for cb in trainer.callbacks if isinstance(cb, Probe)]  # type: ignore[attr-defined]
    seen: dict[str, Probe] = {}
    for probe in probes:
        other = seen.setdefault(probe.source, probe)
        if other is not probe:
            raise ValueError(
                f"{type(other).__name__} and {type(probe).__name__} share the name {probe.source!r}; their"
                " records would be mixed in one source. Give each probe a different `name=`."
            )
    return probes


def check_strategy(trainer: pl.Trainer, owner: str) -> None:
    """Refuse strategies under which a probe's forward pass could read sharded parameters.

    Raises:
        ValueError: the Trainer's strategy is (a subclass of) one of :data:`REFUSED_STRATEGIES`.
    """
    names = {cls.__name__ for cls in type(trainer.strategy).__mro__}
    for refused, why in REFUSED_STRATEGIES.items():
        if refused in names:
            raise ValueError(
                f"{owner} cannot run under {type(trainer.strategy).__name__}: {why} Use"
                " DDPStrategy (strategy='ddp'; the probe set is sharded across ranks), or"
                " ModelParallelStrategy with torch.distributed.fsdp.fully_shard (FSDP2), under which every"
                " rank runs the same probe forward with the parameters all-gathered (docs/scaling.md)."
            )


def probe_shard(trainer: pl.Trainer, owner: str) -> tuple[int, int]:
    """(rank, world size) over which to shard a probe set.

    Plain data parallelism (DDP) shards: each rank scores its slice and the slices are gathered.
    Sharded-parameter strategies run collectives inside the forward, so every rank must run the
    same forwards: there the probe set is not sharded. Under ``ModelParallelStrategy`` (FSDP2,
    ``fully_shard``) the reader all-gathers the parameters of sharded ancestors of the probed model
    itself (see :func:`probes.core.reader.fsdp2_ancestors`).

    Raises:
        ValueError: under a strategy whose probe forward is not known to be safe.
    """
    from lightning.pytorch.strategies import DDPStrategy

    check_strategy(trainer, owner)
    if trainer.world_size > 1 and isinstance(trainer.strategy, DDPStrategy):
        return trainer.global_rank, trainer.world_size
    return 0, 1


class LightningHooks(Callback):
    """Lightning hooks for a :class:`~probes.core.probe.Probe` (mixed in after the probe class, see
    :func:`lightning_callback`).

    =============================  ===============================================
    Lightning hook                 probe event
    =============================  ===============================================
    ``setup``                      :meth:`~probes.core.probe.Probe.attach`
    ``on_fit_start``               :meth:`~probes.core.probe.Probe.check`
    ``on_train_batch_start``       :meth:`~probes.core.probe.Probe.observe_batch`
    ``on_train_batch_end``         :meth:`~probes.core.probe.Probe.observe_outputs`
    ``on_before_optimizer_step``   :meth:`~probes.core.probe.Probe.before_optimizer_step`
    ``on_train_end``               :meth:`~probes.core.probe.Probe.training_ended`
    =============================  ===============================================

    ``on_before_optimizer_step`` while ``trainer.global_step == t`` is step ``t``: the weights after
    ``t`` updates, before update ``t + 1``.
    """

    _shard: tuple[int, int] = (0, 1)

    def context(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, final: bool = False) -> TrainingContext:
        """The probe event context of ``trainer`` now (loggers only outside ``on_train_end``, where
        Lightning forbids ``self.log``)."""
        hubs = _hubs_of(trainer)
        strategy = trainer.strategy

        def log(name: str, value: torch.Tensor) -> None:
            pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1)

        def stop() -> None:
            trainer.should_stop = True

        return TrainingContext(
            pl_module,
            step=trainer.global_step,
            epoch=reading_epoch(trainer),
            final=final,
            shard=self._shard,
            world_size=trainer.world_size,
            hubs=hubs,
            gather=lambda t: strategy.all_gather(t),
            reduce_sum=lambda t: strategy.reduce(t, reduce_op="sum"),
            any_rank=lambda flag: bool(strategy.reduce_boolean_decision(flag, all=False)),
            log=log if trainer.loggers and not final else None,
            request_stop=stop,
            optimizers=tuple(getattr(trainer, "optimizers", None) or ()),
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.reads_model:  # type: ignore[attr-defined]
            self._shard = probe_shard(trainer, self.state_key)  # type: ignore[attr-defined]
        self.attach(self.context(trainer, pl_module))  # type: ignore[attr-defined]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Dry-run the probe's forward once (isolated, one row) before the first training step, so a
        model that does not take the probe's inputs fails now with a message naming ``model=`` and
        ``logits_fn=``, not inside the first optimizer step."""
        self.check(self.context(trainer, pl_module))  # type: ignore[attr-defined]

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.observe_batch(self.context(trainer, pl_module), batch)  # type: ignore[attr-defined]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.observe_outputs(self.context(trainer, pl_module), outputs)  # type: ignore[attr-defined]

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.before_optimizer_step(self.context(trainer, pl_module))  # type: ignore[attr-defined]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training_ended(self.context(trainer, pl_module, final=True))  # type: ignore[attr-defined]



class ProbeCallback(Probe, LightningHooks):
    """Base class of a probe written for Lightning: a :class:`~probes.core.probe.Probe` with the
    Lightning hooks. Override :meth:`~probes.core.probe.Probe.take_reading` (read on the schedule),
    or override Lightning hooks directly; :meth:`emit` records either way.

    Args:
        name: the record source (unique per probe).
        every_n_steps: as for :class:`~probes.core.probe.Probe`.
    """

    reads_model = False

    def take_reading(self, ctx: TrainingContext) -> None:
        """Nothing by default: a subclass reads here, or in hooks of its own."""

    # helpers of the earlier callbacks, kept for code written against them
    reading_epoch = staticmethod(reading_epoch)
    probe_callbacks = staticmethod(probe_callbacks)


def lightning_callback(probe_class: type[Probe], module: Optional[str] = None) -> type:
    """The Lightning callback class of ``probe_class``: the same probe, plus the
    :class:`LightningHooks`. It keeps the probe class's name, so run logs and ``state_key`` are unchanged.

    Args:
        probe_class: a :class:`~probes.core.probe.Probe` subclass.
        module: the module the class is published in (for pickling, e.g. under ``ddp_spawn``);
            assign the result to the same name there.
    """
    if not (isinstance(probe_class, type) and issubclass(probe_class, Probe)):
        raise ValueError(f"Expected a Probe subclass, got {probe_class!r}.")
    namespace = {
        "__doc__": probe_class.__doc__,
        "__module__": module or probe_class.__module__,
        "__qualname__": probe_class.__name__,
    }
    return type(probe_class.__name__, (probe_class, LightningHooks), namespace)
