"""The Hugging Face ``transformers.Trainer`` adapter: Trainer events drive the framework-free probes.

The same probe objects run under Lightning, :class:`~probes.integrations.loop.ProbeLoop` and here::

    from probes import KeywordProbe
    from probes.integrations.hf import ProbeTrainerCallback

    probe = KeywordProbe(pairs, tokenizer)                 # the model the Trainer trains is read
    trainer = Trainer(model=model, args=args, train_dataset=data)
    ProbeTrainerCallback([probe], run_log="runs/hf").install(trainer)
    trainer.train()

=============================  =========================================================
Trainer event                  probe event
=============================  =========================================================
``on_train_begin``             :meth:`~probes.core.probe.Probe.attach`, then ``check``
``training_step`` (installed)  ``observe_batch`` (each micro-batch, before its forward)
``on_pre_optimizer_step``      :meth:`~probes.core.probe.Probe.before_optimizer_step`
``on_substep_end``,            ``observe_outputs`` of what :meth:`ProbeTrainerCallback.add_outputs`
``on_pre_optimizer_step``,     queued; an optimizer step's last output waits for ``on_step_end``,
``on_step_end``                after the update
``on_train_end``               :meth:`~probes.core.probe.Probe.training_ended`
=============================  =========================================================

``on_pre_optimizer_step`` runs after gradient clipping and just before ``optimizer.step()``, while
``state.global_step == t``: the reading is recorded as step ``t`` (the weights after ``t``
updates, before update ``t + 1``), as under Lightning and ``ProbeLoop``; one more reading is taken
at ``on_train_end``.

The Trainer hands its callbacks no batches. :meth:`ProbeTrainerCallback.install` adds the callback
to a Trainer *and* wraps that Trainer's ``training_step`` so each micro-batch goes to
``observe_batch`` before its forward, as Lightning's ``on_train_batch_start`` does (exposure
counts of ``PrimingProbe`` need it); the batch and the step are otherwise untouched. A callback
passed as ``Trainer(callbacks=[...])`` reads the model but sees no batches.

RL trainers: :meth:`ProbeTrainerCallback.rollout_reward` wraps a TRL reward function so that the
completions a ``GRPOTrainer`` generates in training reach rollout-mode probes (a rollout-mode
``FormatProbe``), dated by the weights that generated them. See ``docs/hf.md``.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:  # pragma: no cover - transformers is an optional extra
    raise ImportError(
        "probes.integrations.hf needs transformers: pip install 'probes[hf]' (or pip install transformers)."
    ) from err

from probes.core.context import ScalarLogger, TrainingContext
from probes.core.hub import Hubs
from probes.core.probe import Probe, probe_list
from probes.core.records import RecordSink

__all__ = ["ProbeTrainerCallback", "RewardFn", "distributed_collectives"]

RewardFn = Callable[..., Any]
"""A TRL-style reward function: called with keyword arguments (``prompts``, ``completions``,
``completion_ids``, dataset columns, ``trainer_state``...), returns one reward (or None) per completion."""


def distributed_collectives() -> dict[str, Any]:
    """``rank``, ``world_size`` and the collectives ``gather``, ``reduce_sum``, ``any_rank`` over
    ``torch.distributed`` when a process group is initialised (one process otherwise: rank 0 of 1,
    no collectives)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {"rank": 0, "world_size": 1, "gather": None, "reduce_sum": None, "any_rank": None}
    world = dist.get_world_size()

    def gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts)

    def reduce_sum(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def any_rank(flag: bool) -> bool:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        x = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return bool(x.item())

    collectives = {"gather": gather, "reduce_sum": reduce_sum, "any_rank": any_rank}
    return {"rank": dist.get_rank(), "world_size": world, **collectives}


class ProbeTrainerCallback(TrainerCallback):
    """Drives probes from a Hugging Face ``transformers.Trainer`` (see the module docstring).

    Args:
        probes: the probes (framework-free ones from ``probes.<kind>.probe``, or the Lightning
            classes exported by ``probes``: both work). Each probe's ``model=`` path is resolved
            inside the model the Trainer trains (None: the model itself).
        run_log: a directory for a run log (a :class:`~probes.runlog.RunWriter`, written by global
            rank 0 only, closed ``finished`` at ``on_train_end``), or None. A run resumed from a
            checkpoint (``global_step > 0`` at ``on_train_begin``) continues the log there as a new
            timeline whose records supersede the old ones from that step on.
        version: None: log to ``run_log`` itself; ``"auto"``: to ``run_log/version_N`` with the
            next free N (a resumed run continues the newest), as ``RunLog(version="auto")``.
        run_info: extra JSON-able facts stored with the run log.
        flush_every_s: the run log's time flush threshold (seconds; see ``docs/runlog.md``).
        console: True (a new :class:`~probes.console.Dashboard`) or a dashboard to show while
            training, live on a terminal and as plain lines otherwise (rank 0 only); False: none.
        sinks: further record sinks on rank 0 (anything with ``register_source`` and ``write``).
        log: ``(name, scalar tensor) -> None`` receiving each probe's summary scalars (the
            Trainer's own loggers cannot take values from callbacks between its logging steps).

    Raises:
        ValueError: no probes, two probes with one name, or a bad argument; at ``on_train_begin``,
            a DeepSpeed or FSDP Trainer with probes that read the model.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        *,
        run_log: Optional[os.PathLike[str] | str] = None,
        version: Optional[str] = None,
        run_info: Optional[Mapping[str, Any]] = None,
        flush_every_s: Optional[float] = 1.0,
        console: Any = False,
        sinks: Iterable[RecordSink] = (),
        log: Optional[ScalarLogger] = None,
    ) -> None:
        self.probes = probe_list(probes)
        if log is not None and not callable(log):
            raise ValueError(f"Expected `log` to be callable (name, tensor) -> None, got {log!r}.")
        from probes.console.dashboard import Dashboard

        if console is True:
            console = Dashboard()
        elif console is not False and console is not None and not isinstance(console, Dashboard):
            raise ValueError(f"Expected `console` to be a bool or a probes.console.Dashboard, got {console!r}.")
        self.dashboard: Optional[Dashboard] = console or None
        if version not in (None, "auto"):
            raise ValueError(f"Expected `version` to be None or 'auto', got {version!r}.")
        self.run_log = run_log
        self.version = version
        self.run_dir: Optional[Path] = None  # where the run log went, once training began
        self.run_info = dict(run_info or {})
        self.flush_every_s = flush_every_s
        self.hubs = Hubs()
        self.writer: Any = None
        self._sinks = list(sinks)
        self._log = log
        self._dist: dict[str, Any] = {"rank": 0, "world_size": 1, "gather": None, "reduce_sum": None, "any_rank": None}
        self._module: Optional[nn.Module] = None
        self._epoch = 0
        self._epoch_base = 0
        self._epochs_begun = 0
        self._state: Optional[TrainerState] = None
        self._installed = False
        self._outputs: list[Any] = []
        self._session: Any = None
        self._stop = False
        self._started = False
        self._optimizer_given: Any = None
        self._trainer: Optional[weakref.ref[Any]] = None
        self._rollout_fn: Optional[str] = None  # the name of the reward function wrapped by rollout_reward
        self._rollout_warned = False

    # --- context ---------------------------------------------------------------------------------

    def context(self, state: TrainerState, *, final: bool = False) -> TrainingContext:
        """The probe event context at the Trainer's current step."""
        if self._module is None:
            raise RuntimeError("ProbeTrainerCallback: training has not begun (no model yet).")
        rank, world = self._dist["rank"], self._dist["world_size"]
        shard = (rank, world) if world > 1 else (0, 1)
        return TrainingContext(
            self._module,
            step=state.global_step,
            epoch=self._epoch,
            final=final,
            shard=shard,
            world_size=world,
            hubs=self.hubs,
            gather=self._dist["gather"],
            reduce_sum=self._dist["reduce_sum"],
            any_rank=self._dist["any_rank"],
            log=None if final else self._log,
            request_stop=self._request_stop,
            optimizers=self._current_optimizers(),
        )

    def _current_optimizers(self) -> tuple[torch.optim.Optimizer, ...]:
        """The Trainer's torch optimizer (the one accelerate wraps), for probes that hook its steps:
        from the callback arguments, else from the Trainer this callback was installed in."""
        trainer = self._trainer() if self._trainer is not None else None
        optimizer = self._optimizer_given or getattr(trainer, "optimizer", None)
        optimizer = getattr(optimizer, "optimizer", optimizer)
        return (optimizer,) if isinstance(optimizer, torch.optim.Optimizer) else ()

    def _request_stop(self) -> None:
        self._stop = True

    def add_outputs(self, outputs: Any) -> None:
        """Queue what a training step produced (e.g. RL rollouts: ``{"completions": [...]}`` for a
        rollout-mode :class:`~probes.formats.probe.FormatProbe`); the probes observe it after the
        micro-batch, as Lightning's ``on_train_batch_end`` does. Call it from the training step
        (e.g. a ``compute_loss`` override), or let :meth:`rollout_reward` call it.

        Raises:
            RuntimeError: training has begun but the callback was not added with :meth:`install`
                (outputs are dated by the micro-batch that produced them, which only ``install`` sees).
        """
        if self._state is not None and not self._installed:
            raise RuntimeError(
                "ProbeTrainerCallback.add_outputs needs the callback added with"
                " ProbeTrainerCallback(...).install(trainer), not Trainer(callbacks=[...]): outputs are dated by the"
                " training micro-batch that produced them, which only install() sees."
            )
        self._outputs.append(outputs)

    def rollout_reward(
        self, reward_fn: RewardFn, *, completions_key: str = "completions", rewards_key: str = "rewards"
    ) -> RewardFn:
        """Wrap a TRL-style reward function so that, in training, the completions it is given and the
        rewards it returns also go to :meth:`add_outputs`: pass the result to
        ``GRPOTrainer(reward_funcs=[...])`` in place of ``reward_fn`` and :meth:`install` the callback.

        The wrapper returns what ``reward_fn`` returns, keeps its ``__name__`` (TRL names the reward's
        metrics after it) and is ``async`` when ``reward_fn`` is. It queues
        ``{completions_key: texts, rewards_key: rewards}`` (a None reward as NaN) only while the
        model is in training mode, so completions generated for evaluation are not counted. A
        completion is a string, or a conversation (a list of ``{"role", "content"}`` messages) whose
        string contents are joined. Wrap one reward function per callback: the completions are the
        same for every reward function, and each wrapper would count them again.

        Args:
            reward_fn: called with keyword arguments, among them ``completions`` (as TRL calls it).
            completions_key: the key the rollout probes read completions from.
            rewards_key: the key they read per-completion rewards from.

        Raises:
            ValueError: ``reward_fn`` is not callable, or this callback already wraps a reward function.

        Example::

            callback = ProbeTrainerCallback([FormatProbe(spec, mode="rollout")], run_log="runs/grpo")
            trainer = GRPOTrainer(model=model, reward_funcs=[callback.rollout_reward(my_reward)], args=config,
                                  train_dataset=prompts, processing_class=tokenizer)
            callback.install(trainer)
        """
        if not callable(reward_fn):
            raise ValueError(f"Expected `reward_fn` to be a callable reward function, got {reward_fn!r}.")
        if self._rollout_fn is not None:
            raise ValueError(
                f"This ProbeTrainerCallback already receives rollouts from {self._rollout_fn!r}; every reward function"
                " sees the same completions, so wrap only one of them."
            )
        self._rollout_fn = getattr(reward_fn, "__name__", repr(reward_fn))

        def queue(kwargs: Mapping[str, Any], rewards: Any) -> None:
            if self._module is None or not self._module.training:  # before training, or evaluating
                return
            try:
                if "completions" not in kwargs:
                    raise ValueError(
                        f"the reward function {self._rollout_fn!r} was called without `completions=`; rollout_reward"
                        " expects TRL's keyword call reward_fn(prompts=..., completions=..., ...)"
                    )
                texts = [_completion_text(c) for c in kwargs["completions"]]
                values = None if rewards is None else [math.nan if r is None else float(r) for r in rewards]
            except (ValueError, TypeError) as err:  # a probe never takes the training run down
                if not self._rollout_warned:
                    self._rollout_warned = True
                    warnings.warn(
                        f"rollout_reward: these rollouts are not recorded ({err}); training goes on. Warned once.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return
            self.add_outputs({completions_key: texts, rewards_key: values})

        if inspect.iscoroutinefunction(reward_fn) or inspect.iscoroutinefunction(type(reward_fn).__call__):

            @functools.wraps(reward_fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                rewards = await reward_fn(*args, **kwargs)
                queue(kwargs, rewards)
                return rewards

            return async_wrapper

        @functools.wraps(reward_fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            rewards = reward_fn(*args, **kwargs)
            queue(kwargs, rewards)
            return rewards

        return wrapper

    def install(self, trainer: Any) -> ProbeTrainerCallback:
        """Add this callback to ``trainer`` and send each training micro-batch to ``observe_batch``
        (the Trainer's ``training_step`` of this instance is wrapped: it calls :meth:`observe_batch`
        with its inputs, then the original). Returns ``self``.

        Raises:
            ValueError: ``trainer`` has no ``training_step`` and ``add_callback`` (not a Trainer).
        """
        step_fn = getattr(trainer, "training_step", None)
        if not callable(step_fn) or not callable(getattr(trainer, "add_callback", None)):
            raise ValueError(f"Expected a transformers.Trainer, got {type(trainer).__name__}.")
        self._trainer = weakref.ref(trainer)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        if not self._installed:
            self._installed = True

            def training_step(model: nn.Module, inputs: Any, *args: Any, **kwargs: Any) -> Any:
                self.observe_batch(inputs)
                return step_fn(model, inputs, *args, **kwargs)

            trainer.training_step = training_step
        return self

    def observe_batch(self, batch: Any) -> None:
        """A training micro-batch, before its forward (:meth:`install` calls it)."""
        if self._state is None:
            return
        ctx = self.context(self._state)
        for probe in self.probes:
            probe.observe_batch(ctx, batch)

    # --- Trainer events ---------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the sinks (rank 0), attach every probe, dry-run its forward, start recording batches."""
        model = kwargs.get("model")
        if not isinstance(model, nn.Module):
            raise ValueError("ProbeTrainerCallback: the Trainer passed no model to on_train_begin.")
        if self._started:
            raise RuntimeError("ProbeTrainerCallback: one callback drives one train() call; make a new one.")
        self._started = True
        reads = [p.state_key for p in self.probes if p.reads_model]
        if reads and (getattr(args, "deepspeed", None) or getattr(args, "fsdp", None)):
            raise ValueError(
                f"{reads[0]} cannot run under a DeepSpeed or FSDP Trainer: parameters are gathered only inside"
                " the engine's forward, which a probe's direct call to the language model bypasses. Use plain"
                " data parallelism (torchrun without --deepspeed/--fsdp), under which the probe set is sharded."
            )
        self._module = model
        self._optimizer_given = kwargs.get("optimizer")
        self._dist = distributed_collectives()
        self._epoch_base = self._epoch = max(0, int(state.epoch or 0))  # epochs completed (resumed runs)
        rank0 = self._dist["rank"] == 0
        if rank0 and self.run_log is not None:
            from probes.runlog import RunWriter

            path, branch = self._run_dir(int(state.global_step))
            info = {
                "world_size": self._dist["world_size"],
                "driver": "probes.integrations.hf",
                "max_steps": int(state.max_steps or 0),
                "opened_at_step": int(state.global_step),
                **self.run_info,
            }
            self.writer = RunWriter(path, branch=branch, run_info=info, flush_every_s=self.flush_every_s)
            self.run_dir = path
            self._sinks.append(self.writer)
        if rank0 and self.dashboard is not None:
            from probes.console.session import ConsoleSession

            self._sinks.append(self.dashboard)
            self._session = ConsoleSession(self.dashboard)
        ctx = self.context(state)
        for probe in self.probes:
            probe.attach(ctx)
        for probe in self.probes:
            probe.check(ctx)
        if rank0:
            for probe in self.probes:
                for sink in self._sinks:
                    probe.subscribe(sink)
        if self._session is not None:
            self._session.start()
        self._state = state
        wants = [p.state_key for p in self.probes if getattr(p, "count_exposures", False)]
        if wants and not self._installed:
            warnings.warn(
                f"ProbeTrainerCallback: {wants[0]} counts exposures in training batches, which a Trainer"
                " callback does not see; add it with ProbeTrainerCallback(...).install(trainer) to count them.",
                stacklevel=2,
            )

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """An epoch starts: readings from now on belong to it (the last epoch that started, as
        under Lightning)."""
        self._epochs_begun += 1
        self._epoch = self._epoch_base + self._epochs_begun - 1

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        self._drain_outputs(state, keep_last=True)
        return control

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """The reading of step ``state.global_step`` (before update ``global_step + 1``)."""
        self._drain_outputs(state, keep_last=True)
        ctx = self.context(state)
        for probe in self.probes:
            probe.before_optimizer_step(ctx)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        self._drain_outputs(state)
        if self.writer is not None:
            self.writer.maybe_flush()
        if self._session is not None:
            self._session.progress(state.global_step, self._epoch)
        if self._stop:
            control.should_training_stop = True
        return control

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """The final reading (unless the last step was read); the run log closed ``finished``."""
        self._drain_outputs(state)
        try:
            ctx = self.context(state, final=True)
            for probe in self.probes:
                probe.training_ended(ctx)
        except BaseException:
            self._close("failed")
            raise
        self._close("finished")

    # --- internals ----------------------------------------------------------------------------------

    def _run_dir(self, step: int) -> tuple[Path, Any]:
        """The run log's directory (``version="auto"``: the next free ``version_N``; a resumed run,
        ``step > 0``, continues the newest one) and, when resuming into a log, the branch to write."""
        from probes.runlog import Branch
        from probes.runlog.layout import parse_shard_name

        root = Path(self.run_log)  # type: ignore[arg-type]
        path = root
        if self.version == "auto":
            taken = [
                int(e.name[len("version_"):]) for e in (root.iterdir() if root.is_dir() else ())
                if e.name.startswith("version_") and e.name[len("version_"):].isdigit() and e.is_dir()
            ]
            last = max(taken, default=-1)
            path = root / f"version_{last if step > 0 and last >= 0 else last + 1}"
        timelines = [p[1] for p in map(parse_shard_name, os.listdir(path)) if p is not None] if path.is_dir() else []
        if step > 0 and timelines:  # resumed from a checkpoint: records from `step` on are superseded
            return path, Branch(parent=max(timelines), fork_step=step - 1)
        return path, None

    def _drain_outputs(self, state: TrainerState, *, keep_last: bool = False) -> None:
        """Hand the queued outputs to the probes. Before the update (``keep_last``) the latest one
        is held back, so that each optimizer step's last output is observed after its update
        (``on_step_end``), whichever micro-batch produced it: an RL trainer that generates a whole
        generation batch in its first micro-batch (TRL's GRPO) queues nothing in the later ones."""
        held = self._outputs[-1:] if keep_last else []
        outputs, self._outputs = self._outputs[: len(self._outputs) - len(held)], held
        if not outputs:
            return
        ctx = self.context(state)
        for out in outputs:
            for probe in self.probes:
                probe.observe_outputs(ctx, out)

    def _close(self, status: str) -> None:
        session, self._session = self._session, None
        writer, self.writer = self.writer, None
        try:
            if session is not None:
                session.stop(None if status == "finished" else status)
        finally:
            if writer is not None:
                writer.close(status)


def _completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or a conversation whose string contents are joined.

    Raises:
        ValueError: anything else (say, multimodal content parts).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(
        isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in completion
    ):
        return "".join(m["content"] for m in completion)
    raise ValueError(
        "rollout_reward classifies completions as text: expected a string or a list of {'role', 'content'} messages"
        f" with string content, got {completion!r:.200}. Call callback.add_outputs({{'completions': texts}})"
        " from your reward function instead, with the texts you want classified."
    )
