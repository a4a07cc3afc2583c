"""LayerUpdateProbe: per layer group, how much of each optimizer step lands there.

For an optimizer step taking the parameters from ``W`` to ``W'`` (``dW = W' - W``) and each layer
group ``g`` (:mod:`probes.updates.spec`), a reading records

* ``update_sq[g] = ||dW_g||^2`` and ``share[g] = ||dW_g||^2 / sum_h ||dW_h||^2`` (the shares sum to 1);
* ``relative[g] = ||dW_g|| / ||W_g||`` (the norm before the step);
* ``param_norm[g] = ||W'_g||``;
* with ``drift=True``: ``drift[g] = ||W'_g - W0_g||`` and ``drift_relative[g] = drift[g] / ||W0_g||``,
  where ``W0`` are the parameters at the start of the stage (the first step this probe saw in this
  fit, or the reference restored from a checkpoint);
* the scalars ``update_norm = ||dW||`` and ``drift_norm = ||W' - W0||``.

Norms are Frobenius norms over every element of the group's parameters, computed per tensor in
float64 (``torch._foreach_norm``, one fused kernel per dtype and device) and summed per group.

How: ``torch.optim.Optimizer.register_step_pre_hook`` copies the probed parameters of the stepping
optimizer (one fused ``torch._foreach_mul(params, 1)``), ``register_step_post_hook`` subtracts the new
values from the copy in place, takes the norms and frees the copy. The hooks see exactly the
parameters before and after ``optimizer.step()``, whatever ran in between (gradient accumulation,
clipping, AMP unscaling), under Lightning, a plain loop and Hugging Face alike. Extra memory: during
a recorded step, one copy of the probed parameters of that optimizer (freed in the post-hook); with
``drift=True``, one more copy for the whole stage (the start-of-stage reference ``W0``, on the
parameters' device, also saved in the probe's checkpoint state). Steps the schedule skips copy
nothing.

A record is labelled with the update it measures: step ``t`` is update ``t`` (from the weights after
``t - 1`` updates to those after ``t``), so its weights are those another probe reads at step ``t``.

Under DDP the parameters are replicated, so every rank computes the same figures with no collective;
sharded parameters (FSDP2 ``DTensor``) are refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Optional, Union

import torch

from probes.core.context import TrainingContext
from probes.core.model_io import resolve_module
from probes.core.probe import Probe
from probes.core.records import RecordSink
from probes.core.schedule import ReadSchedule
from probes.updates.spec import assign_groups

__all__ = ["LayerUpdateProbe", "group_norms_sq"]


def group_norms_sq(tensors: list[torch.Tensor], index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Sum over the tensors of each group of their squared Frobenius norms (float64, ``[n_groups]``).

    ``index[i]`` is the group of ``tensors[i]``; one fused ``torch._foreach_norm`` per call.
    """
    out = torch.zeros(n_groups, dtype=torch.float64, device=index.device)
    if not tensors:
        return out
    norms = torch.stack([n.to(index.device) for n in torch._foreach_norm(tensors, 2, dtype=torch.float64)])
    return out.index_add_(0, index, norms * norms)


class _Capture:
    """The copy taken before one optimizer's step, and the accumulators of the update being recorded."""

    def __init__(self, label: int, params: list[torch.Tensor], index: torch.Tensor, before_sq: torch.Tensor) -> None:
        self.label = label
        self.params = params
        self.index = index
        self.copy: Optional[list[torch.Tensor]] = torch._foreach_mul(params, 1.0) if params else []
        self.before_sq = before_sq


class LayerUpdateProbe(Probe):
    """Records where each optimizer step lands, per layer group (see the module docstring).

    Args:
        name: metric namespace and ``state_key`` suffix.
        every_n_steps: record every this many updates (or a
            :class:`~probes.core.schedule.ReadSchedule` over update numbers).
        model: attribute path of the probed module inside the trained module (None: all of it).
        groups: None for automatic groups (embeddings, numbered blocks, head, other), or a mapping
            group name -> regular expression on parameter names (first match wins; else ``other``).
        drift: also record the drift from the start of the stage (keeps one copy of the probed
            parameters for the stage).
        log_scalars: also log the update norm and the share of the top group to the loggers.

    Raises:
        ValueError: bad arguments; at attach, a module without trainable parameters or with
            sharded (DTensor) parameters.

    Example::

        probe = LayerUpdateProbe(model="model")                  # under Lightning: Trainer(callbacks=[probe])
        with ProbeLoop([probe], model) as loop:                  # or a plain loop
            ...; loop.optimizer_step(optimizer)
    """

    kind = "LayerUpdateProbe"
    reads_model = False
    STATE_VERSION = 1

    def __init__(
        self,
        *,
        name: str = "updates",
        every_n_steps: Union[int, ReadSchedule] = 1,
        model: Optional[str] = None,
        groups: Optional[Mapping[str, str]] = None,
        drift: bool = True,
        log_scalars: bool = True,
    ) -> None:
        super().__init__(name, every_n_steps)
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"Expected `model` to be an attribute path such as 'model', or None; got {model!r}.")
        if groups is not None:
            assign_groups(["probe"], groups)  # validates the patterns now
        self.model = model
        self.patterns = dict(groups) if groups is not None else None
        self.drift = bool(drift)
        self.log_scalars = bool(log_scalars)
        self.groups: Optional[list[str]] = None
        self.param_names: list[str] = []
        self._params: dict[int, tuple[int, int]] = {}  # id(param) -> (position, group)
        self._tensors: list[torch.Tensor] = []
        self._deferred: list[RecordSink] = []
        self._hooked: dict[int, Any] = {}  # id(optimizer) -> hook handles
        self._captures: dict[int, _Capture] = {}
        self._pending: Optional[dict[str, Any]] = None
        self._event_step = -1
        self._event_fresh = False
        self._epoch = 0
        self._reference: Optional[list[torch.Tensor]] = None
        self._reference_sq: Optional[torch.Tensor] = None
        self._loaded_reference: Optional[dict[str, torch.Tensor]] = None
        self._stage_start = -1
        #: bytes of the temporary copy taken at the last recorded step (freed after the step)
        self.copy_bytes = 0

    # --- description and sinks --------------------------------------------------------------------

    def describe(self) -> Mapping[str, Any]:
        metrics = {
            "update_sq": "||dW_g||^2 of the update, per group",
            "share": "||dW_g||^2 / ||dW||^2 (sums to 1)",
            "relative": "||dW_g|| / ||W_g|| (before the step)",
            "param_norm": "||W_g|| after the step",
            "update_norm": "||dW|| over every probed parameter",
        }
        if self.drift:
            metrics |= {
                "drift": "||W_g - W0_g||, W0 the parameters at the start of the stage",
                "drift_relative": "||W_g - W0_g|| / ||W0_g||",
                "drift_norm": "||W - W0|| over every probed parameter",
            }
        return {
            **super().describe(),
            "groups": list(self.groups or []),
            "patterns": self.patterns,
            "model": self.model,
            "drift": self.drift,
            "stage_start": self._stage_start,
            **self.schedule.describe(),
            "metrics": metrics,
        }

    def subscribe(self, sink: RecordSink) -> None:
        """As :meth:`Probe.subscribe`; before :meth:`attach` (groups unknown) the sink is told of the
        source when the probe attaches."""
        if self.groups is None:
            if not any(s is sink for s in self._sinks):
                self._sinks.append(sink)
                self._deferred.append(sink)
            return
        super().subscribe(sink)

    # --- events -------------------------------------------------------------------------------------

    def attach(self, ctx: TrainingContext) -> None:
        """Group the trainable parameters of the probed module, start a stage, hook the optimizers."""
        module = resolve_module(ctx.root, self.model)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        sharded = [n for n, p in named if type(p.data).__name__ == "DTensor" or type(p).__name__ == "DTensor"]
        if sharded:
            raise ValueError(
                f"{self.state_key}: parameters {sharded[:3]} are sharded (DTensor); per-group update norms of"
                " sharded parameters are not supported. Use DDP or a single device."
            )
        groups, index = assign_groups([n for n, _ in named], self.patterns)
        self.groups = groups
        self.param_names = [n for n, _ in named]
        self._tensors = [p for _, p in named]
        self._params = {id(p): (i, g) for i, ((_, p), g) in enumerate(zip(named, index))}
        self._reference = None
        self._reference_sq = None
        self._captures.clear()
        self._pending = None
        self._event_step = ctx.step - 1
        self._event_fresh = False
        self._epoch = ctx.epoch
        self._stage_start = ctx.step
        for sink in self._deferred:
            sink.register_source(self.source, self.describe())
        self._deferred.clear()
        self._hook(ctx)

    def check(self, ctx: TrainingContext) -> None:
        """Hook the optimizers (under Lightning they exist from here on) and take the step from the
        context again (a resumed Trainer has restored it since :meth:`attach`)."""
        self._event_step = ctx.step - 1
        self._event_fresh = False
        self._hook(ctx)

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        """Note the step (the update that follows is ``ctx.step + 1``) and hook new optimizers."""
        if self.groups is None:
            self.attach(ctx)
        self._event_step = ctx.step
        self._event_fresh = True
        self._epoch = ctx.epoch
        self._hook(ctx)

    def training_ended(self, ctx: TrainingContext) -> None:
        """Emit a record still pending (several optimizers) and remove the hooks."""
        self._flush()
        for handles in self._hooked.values():
            for h in handles:
                h.remove()
        self._hooked.clear()
        self._captures.clear()

    def take_reading(self, ctx: TrainingContext) -> None:
        """Nothing: this probe records from the optimizer's step hooks."""

    # --- hooks --------------------------------------------------------------------------------------

    def _hook(self, ctx: TrainingContext) -> None:
        for opt in ctx.optimizers:
            if id(opt) in self._hooked:
                continue
            self._hooked[id(opt)] = (
                opt.register_step_pre_hook(lambda o, a, k: self._pre(o)),
                opt.register_step_post_hook(lambda o, a, k: self._post(o)),
            )

    def _owned(self, opt: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[int], list[int]]:
        params, positions, groups = [], [], []
        for group in opt.param_groups:
            for p in group["params"]:
                found = self._params.get(id(p))
                if found is not None:
                    params.append(p)
                    positions.append(found[0])
                    groups.append(found[1])
        return params, positions, groups

    def _next_label(self) -> int:
        # a plain loop reports the step before optimizer.step() (fresh); Lightning reports it inside
        # step(), from the closure, after this pre-hook
        return self._event_step + 1 if self._event_fresh else self._event_step + 2

    @torch.no_grad()
    def _pre(self, opt: torch.optim.Optimizer) -> None:
        if self.groups is None:
            return
        if self.drift and self._reference is None:
            self._start_reference()
        label = self._next_label()
        if self._pending is not None and self._pending["label"] != label:
            self._flush()
        if not self.schedule.due(label) or label == self.schedule.last_step:
            return
        params, _, groups = self._owned(opt)
        if not params:
            return
        index = torch.tensor(groups, dtype=torch.long, device=params[0].device)
        before_sq = group_norms_sq(params, index, len(self.groups))
        self._captures[id(opt)] = _Capture(label, params, index, before_sq)
        self.copy_bytes = sum(t.numel() * t.element_size() for t in params)

    @torch.no_grad()
    def _post(self, opt: torch.optim.Optimizer) -> None:
        label = self._event_step + 1  # the step event has been seen by now in every adapter
        self._event_fresh = False
        cap = self._captures.pop(id(opt), None)
        if cap is None or cap.copy is None or self.groups is None:
            return
        copy = cap.copy
        cap.copy = None
        torch._foreach_sub_(copy, cap.params)  # copy = W - W' = -dW
        n = len(self.groups)
        update_sq = group_norms_sq(copy, cap.index, n)
        after_sq = group_norms_sq(cap.params, cap.index, n)
        drift_sq = None
        if self.drift and self._reference is not None:
            ref = [self._reference[self._params[id(p)][0]] for p in cap.params]
            torch._foreach_zero_(copy)
            torch._foreach_add_(copy, cap.params)
            torch._foreach_sub_(copy, ref)  # copy = W' - W0, reusing the buffer
            drift_sq = group_norms_sq(copy, cap.index, n)
        del copy
        pending = self._pending
        if pending is None or pending["label"] != label:
            self._flush()
            pending = self._pending = {
                "label": label,
                "update_sq": torch.zeros_like(update_sq),
                "before_sq": torch.zeros_like(update_sq),
                "after_sq": torch.zeros_like(update_sq),
                "drift_sq": torch.zeros_like(update_sq),
            }
        pending["update_sq"] += update_sq
        pending["before_sq"] += cap.before_sq
        pending["after_sq"] += after_sq
        if drift_sq is not None:
            pending["drift_sq"] += drift_sq
        if len(self._hooked) <= 1:
            self._flush()

    @torch.no_grad()
    def _start_reference(self) -> None:
        loaded = self._loaded_reference
        self._loaded_reference = None
        if loaded is not None and set(loaded) == set(self.param_names):
            self._reference = [loaded[n].to(p.device, p.dtype) for n, p in zip(self.param_names, self._tensors)]
        else:
            if loaded is not None:
                warnings.warn(
                    f"{self.state_key}: the checkpoint's drift reference names other parameters; the stage restarts"
                    " from the current weights.",
                    stacklevel=2,
                )
            self._reference = torch._foreach_mul(self._tensors, 1.0) if self._tensors else []
        device = self._tensors[0].device if self._tensors else torch.device("cpu")
        index = torch.tensor([self._params[id(p)][1] for p in self._tensors], dtype=torch.long, device=device)
        self._reference_sq = group_norms_sq(self._reference, index, len(self.groups or []))

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        label = int(pending["label"])
        update_sq = pending["update_sq"]
        total = update_sq.sum()
        tensors = {
            "update_sq": update_sq,
            "share": update_sq / total,
            "relative": (update_sq / pending["before_sq"]).sqrt(),
            "param_norm": pending["after_sq"].sqrt(),
            "update_norm": total.sqrt(),
        }
        if self.drift and self._reference_sq is not None:
            tensors |= {
                "drift": pending["drift_sq"].sqrt(),
                "drift_relative": (pending["drift_sq"] / self._reference_sq).sqrt(),
                "drift_norm": pending["drift_sq"].sum().sqrt(),
            }
        self.schedule.mark(label)
        self.emit(label, tensors, epoch=self._epoch)

    @property
    def reference_bytes(self) -> int:
        """Bytes of the start-of-stage reference kept for the drift (0 without ``drift``)."""
        return sum(t.numel() * t.element_size() for t in self._reference or [])

    # --- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {**super().state_dict(), "stage_start": self._stage_start}
        if self.drift and self._reference is not None:
            state["reference"] = {n: r.detach().cpu().clone() for n, r in zip(self.param_names, self._reference)}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._stage_start = int(state_dict.get("stage_start", self._stage_start))
        reference = state_dict.get("reference")
        if isinstance(reference, Mapping):
            self._loaded_reference = {str(k): v for k, v in reference.items() if isinstance(v, torch.Tensor)}
            self._reference = None
            self._reference_sq = None
