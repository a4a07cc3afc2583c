"""ThoughtGainProbe: the information gain of a thought, read over training (RLP's reward signal).

For a fixed triple (context ``c``, thought ``z``, continuation ``x``) a reading records

* ``logp_thought = log p_theta(x | c, z)`` and ``logp_plain = log p_theta(x | c)``, each the chained
  log-probability (nats, float64) of the *same* continuation token ids: those of ``x`` as tokenized
  after ``c + z`` under the library's score convention (:mod:`probes.core.tokenize`);
* ``gain = logp_thought - logp_plain`` (positive: the thought makes the continuation more likely) and
  ``gain_per_token = gain / n_tokens(x)``;
* with ``ema_decay=``: ``logp_plain_ema = log p_ema(x | c)`` under a slowly updated copy of the
  weights and ``gain_ema = logp_thought - logp_plain_ema``, the form of RLP's reward (the thought is
  scored by the current policy, the no-thought baseline by the EMA teacher).

Both items of every triple are scored in the shared scoring pass of the probes on the model (one
batched no-grad forward per step for every probe due). The EMA baseline is one extra pass over the
no-thought items against the copy.

EMA: ``ema_t = decay * ema_{t-1} + (1 - decay) * theta_t`` at every optimizer step ``t`` (the weights
after ``t`` updates; ``ema`` starts as the weights when the probe first sees the model), updated
before the reading of step ``t``. Memory: one copy of the probed model (parameters and buffers, same
dtype and device), kept for the whole run and saved in the probe's checkpoint state.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import torch
from torch import nn

from probes.core.context import TrainingContext
from probes.core.hub import Hubs, ScoringHub
from probes.core.model_io import Encoder, as_encoder, resolve_module
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores, TokenizedItem
from probes.core.probe import ScoringProbe
from probes.core.reader import Gather
from probes.core.schedule import ReadSchedule
from probes.core.tokenize import Affixes, tokenize_continuation
from probes.thought.spec import ItemLike, as_thought_items

__all__ = ["ThoughtGainProbe", "ThoughtReading", "start_ids"]


def start_ids(
    bos_id: Union[int, Sequence[int], None], prefix: Optional[str], encode: Optional[Encoder]
) -> tuple[int, ...]:
    """Start tokens put before every scored context: ``bos_id`` (one id or several) then ``prefix`` encoded.

    Raises:
        ValueError: a bad id, or a text prefix without a tokenizer.
    """
    if bos_id is None:
        start: tuple[int, ...] = ()
    elif isinstance(bos_id, int) and not isinstance(bos_id, bool) and bos_id >= 0:
        start = (bos_id,)
    elif isinstance(bos_id, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                   for t in bos_id):
        start = tuple(bos_id)
    else:
        raise ValueError(f"Expected `bos_id` to be a non-negative token id or a sequence of them, got {bos_id!r}.")
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"Expected `prefix` to be a non-empty string, got {prefix!r}.")
        if encode is None:
            raise ValueError("`prefix` is text but no tokenizer was given: pass `tokenizer=` or use `bos_id=`.")
        start = start + tuple(encode(prefix))
    return start


@dataclass(frozen=True)
class ThoughtReading:
    """One reading (device tensors, ``[n_items]``; the EMA fields are None without an EMA baseline)."""

    logp_thought: torch.Tensor
    logp_plain: torch.Tensor
    gain: torch.Tensor
    gain_per_token: torch.Tensor
    nonfinite: torch.Tensor
    logp_plain_ema: Optional[torch.Tensor] = None
    gain_ema: Optional[torch.Tensor] = None

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "logp_thought": self.logp_thought,
            "logp_plain": self.logp_plain,
            "gain": self.gain,
            "gain_per_token": self.gain_per_token,
            "mean_gain": self.gain.mean(),
            "nonfinite": self.nonfinite,
        }
        if self.gain_ema is not None and self.logp_plain_ema is not None:
            out |= {"logp_plain_ema": self.logp_plain_ema, "gain_ema": self.gain_ema}
        return out


class _Baseline:
    """The no-thought items as a member of the EMA copy's private scoring hub."""

    def __init__(self, owner: str, requests: list[TokenizedItem], scoring: ScoringOptions) -> None:
        self.state_key = f"{owner}/ema"
        self.requests = requests
        self.scoring = scoring
        self.schedule = ReadSchedule(1)


def _floating(module: nn.Module) -> list[torch.Tensor]:
    """The floating parameters and buffers of ``module``, each shared tensor once (tied weights)."""
    tensors = [p.data for _, p in module.named_parameters()] + list(module.buffers())
    return [t for t in tensors if t.is_floating_point()]


class ThoughtGainProbe(ScoringProbe):
    """Records the information gain of each thought every ``every_n_steps`` optimizer steps and when
    training ends (see the module docstring).

    Records (``[n_items]`` in item order unless noted): ``logp_thought``, ``logp_plain``, ``gain``,
    ``gain_per_token``, ``mean_gain`` (0-d), ``nonfinite``; with ``ema_decay``: ``logp_plain_ema``,
    ``gain_ema``.

    Args:
        items: :class:`~probes.thought.spec.ThoughtItem` objects or ``(name, context, thought,
            continuation)`` tuples.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable, or None for ids.
        name: metric namespace and ``state_key`` suffix.
        every_n_steps: read every this many optimizer steps, or a ReadSchedule.
        thought_separator: inserted between a text context and its thought (default one space).
        separator: inserted between the thought (or the context) and the continuation (one space).
        bos_id, prefix: start tokens put before every context (default ``scoring.bos_id``).
        ema_decay: also score the no-thought baseline against an EMA copy of the weights with this
            decay (RLP uses 0.999); None: no copy.
        scoring: the :class:`~probes.core.options.ScoringOptions` (or its fields as keywords).
        log_scalars: also log the mean gain through the loop's loggers.

    Raises:
        ValueError: bad items or arguments, or text that does not tokenize.

    Example::

        probe = ThoughtGainProbe([("sum", "2 + 3 =", "two and three make five", "5")], tok, model="model")
    """

    kind = "ThoughtGainProbe"
    STATE_VERSION = 1

    def __init__(
        self,
        items: Iterable[ItemLike],
        tokenizer: Any = None,
        *,
        name: str = "thought",
        every_n_steps: Union[int, ReadSchedule] = 1,
        thought_separator: str = " ",
        separator: str = " ",
        bos_id: Union[int, Sequence[int], None] = None,
        prefix: Optional[str] = None,
        ema_decay: Optional[float] = None,
        log_scalars: bool = True,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="ThoughtGainProbe"))
        for what, sep in (("thought_separator", thought_separator), ("separator", separator)):
            if not isinstance(sep, str):
                raise ValueError(f"Expected `{what}` to be a string, got {sep!r}.")
        if ema_decay is not None and not (isinstance(ema_decay, float) and 0.0 < ema_decay < 1.0):
            raise ValueError(
                f"Expected `ema_decay` to be a float in (0, 1) (RLP uses 0.999), or None; got {ema_decay!r}."
            )
        self.items = as_thought_items(items)
        encode = as_encoder(tokenizer)
        if any(it.is_text for it in self.items) and encode is None:
            raise ValueError("Thought items are text but no tokenizer was given: pass `tokenizer=` or give ids.")
        self.start = start_ids(self.scoring.bos_id if bos_id is None else bos_id, prefix, encode)
        self.thought_separator = thought_separator
        self.separator = separator
        self.ema_decay = ema_decay
        self.log_scalars = log_scalars
        self.requests = self._tokenize(encode)
        n = len(self.items)
        self._baseline = _Baseline(self.state_key, self.requests[n:], replace(self.scoring, model=None))
        self._ema: Optional[nn.Module] = None
        self._ema_hub: Optional[ScoringHub] = None
        self._ema_step = -1
        self._loaded_ema: Optional[dict[str, torch.Tensor]] = None
        self.nonfinite = NonFiniteMonitor(self.state_key, [it.name for it in self.items])

    def _tokenize(self, encode: Optional[Encoder]) -> list[TokenizedItem]:
        cond, plain = [], []
        for it in self.items:
            if it.is_text:
                assert encode is not None
                context, thought = str(it.context), self.thought_separator + str(it.thought)
                try:
                    ctx = tokenize_continuation(encode, context, thought, affixes=Affixes()).context
                    joint = tokenize_continuation(encode, context + thought, self.separator + str(it.continuation),
                                                  affixes=Affixes())
                except ValueError as err:
                    raise ValueError(f"Thought item {it.name!r}: {err}") from None
                with_thought, cont = joint.context, joint.continuation
            else:
                ctx = tuple(it.context)  # type: ignore[arg-type]
                with_thought = ctx + tuple(it.thought)  # type: ignore[arg-type]
                cont = tuple(it.continuation)  # type: ignore[arg-type]
            cond.append(TokenizedItem(f"{it.name}/continuation|context,thought", self.start + with_thought, cont))
            plain.append(TokenizedItem(f"{it.name}/continuation|context", self.start + ctx, cont))
        return cond + plain

    def describe(self) -> Mapping[str, Any]:
        metrics = {
            "logp_thought": "log p(continuation | context, thought), nats",
            "logp_plain": "log p(continuation | context), the same continuation tokens",
            "gain": "logp_thought - logp_plain",
            "gain_per_token": "gain / continuation tokens",
            "mean_gain": "mean gain over items",
        }
        if self.ema_decay is not None:
            metrics |= {
                "logp_plain_ema": "log p_ema(continuation | context) under the EMA copy",
                "gain_ema": "logp_thought - logp_plain_ema (RLP's reward form)",
            }
        return {
            **super().describe(),
            "items": [it.to_json() for it in self.items],
            "start_ids": list(self.start),
            "thought_separator": self.thought_separator,
            "separator": self.separator,
            "ema_decay": self.ema_decay,
            **self.schedule.describe(),
            "metrics": metrics,
        }

    # --- math ---------------------------------------------------------------------------------------

    def reading_of(self, scores: ItemScores, ema: Optional[ItemScores] = None) -> ThoughtReading:
        """The reading of the scores of :attr:`requests` (and of the EMA copy's no-thought items)."""
        n = len(self.items)
        lt, lp = scores.logp_seq[:n].double(), scores.logp_seq[n:].double()
        gain = lt - lp
        bad = scores.nonfinite.reshape(2, n).any(dim=0)
        out = ThoughtReading(lt, lp, gain, gain / scores.n_tokens[:n].double(), bad)
        if ema is None:
            return out
        le = ema.logp_seq.double()
        return replace(out, logp_plain_ema=le, gain_ema=lt - le, nonfinite=bad | ema.nonfinite)

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> ThoughtReading:  # type: ignore[override]
        """Score every item against ``module`` now (no EMA baseline: there is no training)."""
        return self.reading_of(super().read(module, gather=gather))

    # --- EMA ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def _update_ema(self, ctx: TrainingContext) -> None:
        if self.ema_decay is None or ctx.step == self._ema_step:
            return
        module = resolve_module(ctx.root, self.scoring.model)
        if self._ema is None:
            self._ema = copy.deepcopy(module).eval().requires_grad_(False)
            if self._loaded_ema is not None:
                self._ema.load_state_dict(self._loaded_ema)
                self._loaded_ema = None
            else:
                self._ema_step = ctx.step
                return
        ema, now = _floating(self._ema), _floating(module)
        torch._foreach_lerp_(ema, now, 1.0 - self.ema_decay)
        self._ema_step = ctx.step

    def _ema_scores(self, ctx: TrainingContext) -> ItemScores:
        """The no-thought items scored against the EMA copy, in a private hub (sharded like the main
        pass), so the copy's pass never joins the shared pass on the trained weights."""
        assert self._ema is not None
        if self._ema_hub is None:
            self._ema_hub = Hubs().get(self._baseline.scoring)
            self._ema_hub.register(self._baseline)
        self._ema_hub.reader_for([self._baseline]).bind(self._ema, rank=ctx.shard[0], world_size=ctx.shard[1])
        return self._ema_hub.read_alone(self._baseline, self._ema, ctx.gather)

    # --- events -------------------------------------------------------------------------------------

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        self._update_ema(ctx)
        super().before_optimizer_step(ctx)

    def training_ended(self, ctx: TrainingContext) -> None:
        self._update_ema(ctx)
        super().training_ended(ctx)

    def take_reading(self, ctx: TrainingContext) -> None:
        step = ctx.step
        scores = self.read_scores(ctx)
        ema = self._ema_scores(ctx) if self.ema_decay is not None and self._ema is not None else None
        reading = self.reading_of(scores, ema)
        self.schedule.mark(step)
        self.emit(step, reading.tensors(), epoch=ctx.epoch)
        self.nonfinite.observe(step, reading.nonfinite)
        if ctx.final:
            self.nonfinite.flush()
        elif self.log_scalars and ctx.log is not None:
            ctx.log(f"probes/{self.source}/mean_gain", reading.gain.mean())
            if reading.gain_ema is not None:
                ctx.log(f"probes/{self.source}/mean_gain_ema", reading.gain_ema.mean())

    # --- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {**super().state_dict(), "ema_step": self._ema_step}
        if self._ema is not None:
            state["ema"] = {k: v.detach().cpu().clone() for k, v in self._ema.state_dict().items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._ema_step = int(state_dict.get("ema_step", -1))
        ema = state_dict.get("ema")
        if isinstance(ema, Mapping):
            if self._ema is not None:
                self._ema.load_state_dict(dict(ema))
            else:
                self._loaded_ema = dict(ema)

