"""The plain-loop adapter: drive probes from a hand-written PyTorch training loop.

The same probe objects run under Lightning (``probes.KeywordProbe`` is a Lightning callback too) and
here; this adapter calls the probe events at the points of a loop that Lightning's hooks mark::

    from probes import KeywordProbe
    from probes.integrations.loop import ProbeLoop

    probe = KeywordProbe(pairs, tokenizer)                    # `model=` as under Lightning, if needed
    with ProbeLoop([probe], model, run_log="runs/plain") as loop:
        for batch in loader:
            loop.observe_batch(batch)                         # before the forward (exposure counts)
            loss = model(batch["input_ids"]).loss             # (any forward and loss)
            loss.backward()
            loop.optimizer_step(optimizer)                    # reads, then optimizer.step()
            optimizer.zero_grad()

A reading before update ``t + 1`` is recorded as step ``t`` (the weights after ``t`` updates), and
one more reading is taken when the loop ends, exactly as under Lightning, so the records of a plain
loop equal those of a Lightning run of the same model and data.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

import torch
from torch import nn

from probes.core.context import ScalarLogger, TrainingContext
from probes.core.hub import Hubs
from probes.core.probe import Probe, probe_list
from probes.core.records import RecordSink

__all__ = ["ProbeLoop"]


class ProbeLoop:
    """Probes, their scoring hubs and their sinks, for a loop that is not a Lightning Trainer.

    Args:
        probes: the probes to drive (framework-free ones from ``probes.<kind>.probe``, or the
            Lightning classes exported by ``probes``: both work).
        module: the module being trained; each probe's ``model=`` path is resolved inside it.
        run_log: a directory to write a run log to (a :class:`~probes.runlog.RunWriter` opened there,
            closed as ``finished``, ``failed`` or ``interrupted`` when the loop ends), or None.
        run_info: extra JSON-able facts stored with the run log.
        sinks: further record sinks (anything with ``register_source`` and ``write``, such as a
            :class:`~probes.console.Dashboard`).
        log: ``(name, scalar tensor) -> None`` to send each probe's summary scalars to a logger.
        rank, world_size, gather, reduce_sum, any_rank: for data-parallel loops: this process's rank,
            the number of ranks, and the collectives (e.g. built on ``torch.distributed``); the probe
            set is then sharded across ranks as under Lightning's DDP.
        optimizers: the loop's optimizers, for probes that hook their steps (the one given to
            :meth:`optimizer_step` is added when first seen).

    Raises:
        ValueError: no probes, two probes with one name, or a bad argument.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        module: nn.Module,
        *,
        run_log: Optional[os.PathLike[str] | str] = None,
        run_info: Optional[Mapping[str, Any]] = None,
        sinks: Iterable[RecordSink] = (),
        log: Optional[ScalarLogger] = None,
        rank: int = 0,
        world_size: int = 1,
        gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        reduce_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        any_rank: Optional[Callable[[bool], bool]] = None,
        optimizers: Iterable[torch.optim.Optimizer] = (),
    ) -> None:
        self.probes = probe_list(probes)
        if not isinstance(module, nn.Module):
            raise ValueError(f"Expected `module` to be a torch.nn.Module, got {type(module).__name__}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
        self.module = module
        self.step = 0
        self.epoch = 0
        self.hubs = Hubs()
        self._layout = {"rank": rank, "world_size": world_size}
        self._collectives = {"gather": gather, "reduce_sum": reduce_sum, "any_rank": any_rank}
        self._log = log
        self._sinks = list(sinks)
        self._run_log = run_log
        self._run_info = dict(run_info or {})
        self._writer: Any = None
        self._started = False
        self._ended = False
        self.stop_requested = False
        self.optimizers: list[torch.optim.Optimizer] = list(optimizers)

    # --- context -------------------------------------------------------------------------------------

    def context(self, *, final: bool = False) -> TrainingContext:
        """The probe event context at the current step."""
        rank, world = self._layout["rank"], self._layout["world_size"]
        ctx = TrainingContext(
            self.module,
            step=self.step,
            epoch=self.epoch,
            final=final,
            shard=(rank, world),
            world_size=world,
            hubs=self.hubs,
            log=None if final else self._log,
            request_stop=self._stop,
            optimizers=tuple(self.optimizers),
            **self._collectives,  # type: ignore[arg-type]
        )
        return ctx

    def _stop(self) -> None:
        self.stop_requested = True

    # --- events --------------------------------------------------------------------------------------

    def start(self) -> ProbeLoop:
        """Open the sinks, attach every probe and dry-run its forward (once; ``with`` calls it)."""
        if self._started:
            return self
        self._started = True
        if self._run_log is not None and self._layout["rank"] == 0:
            from probes.runlog import RunWriter

            info = {"world_size": self._layout["world_size"], "driver": "probes.integrations.loop", **self._run_info}
            self._writer = RunWriter(self._run_log, run_info=info)
            self._sinks.append(self._writer)
        ctx = self.context()
        for probe in self.probes:
            probe.attach(ctx)
        for probe in self.probes:
            probe.check(ctx)
        if self._layout["rank"] == 0:
            for probe in self.probes:
                for sink in self._sinks:
                    probe.subscribe(sink)
        return self

    def observe_batch(self, batch: Any) -> None:
        """A training batch, before its forward."""
        ctx = self.context()
        for probe in self.probes:
            probe.observe_batch(ctx, batch)

    def observe_outputs(self, outputs: Any) -> None:
        """What the training step returned (e.g. RL rollouts for a rollout-mode FormatProbe)."""
        ctx = self.context()
        for probe in self.probes:
            probe.observe_outputs(ctx, outputs)

    def before_optimizer_step(self) -> None:
        """Just before ``optimizer.step()``: the probes due read the current weights as step ``self.step``."""
        ctx = self.context()
        for probe in self.probes:
            probe.before_optimizer_step(ctx)

    def after_optimizer_step(self) -> None:
        """Just after ``optimizer.step()``: one more update is in the weights (and the run log
        flushes when its interval has passed, so ``probes watch`` sees the records soon)."""
        self.step += 1
        if self._writer is not None:
            self._writer.maybe_flush()

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """:meth:`before_optimizer_step`, ``optimizer.step()``, :meth:`after_optimizer_step`."""
        if not any(o is optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)
        self.before_optimizer_step()
        optimizer.step()
        self.after_optimizer_step()

    def end(self, status: str = "finished") -> None:
        """The final reading (unless the last step was read) and the sinks closed (once)."""
        if self._ended:
            return
        self._ended = True
        try:
            if status == "finished":
                ctx = self.context(final=True)
                for probe in self.probes:
                    probe.training_ended(ctx)
        finally:
            if self._writer is not None:
                self._writer.close(status)

    def __enter__(self) -> ProbeLoop:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt) or (
            isinstance(exc, SystemExit) and exc.code in (128 + signal.SIGTERM, -signal.SIGTERM)
        ):
            self.end("interrupted")
        else:
            self.end("failed")
