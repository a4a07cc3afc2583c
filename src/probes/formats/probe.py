"""FormatProbe: the distribution of output formats during RL or SFT, its entropy, and its collapse."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Optional, Union

import torch
from torch import nn

from probes.core.checks import positive_int
from probes.core.context import TrainingContext
from probes.core.isolation import isolated_eval
from probes.core.model_io import as_encoder, resolve_module
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.notify import rank_zero_info, rank_zero_warn
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores
from probes.core.probe import ScoringProbe
from probes.core.reader import Gather, fsdp2_gathered, module_device
from probes.core.schedule import ReadSchedule
from probes.formats.collapse import (
    CollapseCriterion,
    CollapseState,
    FormatCollapseError,
    FormatCollapseWarning,
    collapse_condition,
    evaluate_collapse,
)
from probes.formats.entropy import distribution_summary
from probes.formats.sampling import SamplerConfig, sample_texts
from probes.formats.spec import Format, FormatSpec, LabelSpace, as_format_spec
from probes.keyword.spec import ProbePair, ProbeSet, tokenize_pairs

__all__ = ["FormatProbe", "FormatTally"]

_STATE_VERSION = 2  # 2: formats, pooled rollouts
Mode = Literal["rollout", "sampled", "scored"]
GenerateFn = Callable[[nn.Module, list[str]], Sequence[Sequence[str]]]
CompletionFn = Callable[[int, str], Any]


class _Decoder:
    """``ids -> text`` with a tokenizer's ``decode`` (special tokens skipped for Hugging Face ones).

    A class rather than a closure, so the probe stays picklable (``ddp_spawn`` pickles callbacks).
    """

    def __init__(self, tokenizer: Any) -> None:
        if not callable(getattr(tokenizer, "decode", None)):
            raise ValueError(
                f"Tokenizer {tokenizer!r} has no `decode` method; token-id completions need one to be classified."
                " Pass a tokenizer with decode(ids) -> str, or return completions as strings."
            )
        self.tokenizer = tokenizer
        self.hf = hasattr(tokenizer, "batch_decode")

    def __call__(self, ids: Sequence[int]) -> str:
        if self.hf:
            return self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return self.tokenizer.decode(list(ids))


class _Encoder:
    """``text -> ids`` through :func:`~probes.core.model_io.as_encoder`, built lazily (picklable)."""

    def __init__(self, tokenizer: Any) -> None:
        as_encoder(tokenizer)  # validates now
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> list[int]:
        return as_encoder(self.tokenizer)(text)  # type: ignore[misc]




class FormatTally:
    """Per-bucket sums behind one record: counts (probability mass in scored mode), reward and
    correctness sums with the number of values seen, and the number of completions ``n``.

    :meth:`FormatProbe.read` returns one; :meth:`FormatProbe.metrics` turns it into record tensors.
    """

    def __init__(self, k: int, device: torch.device) -> None:
        z = lambda: torch.zeros(k, dtype=torch.float64, device=device)  # noqa: E731
        self.count, self.reward_sum, self.reward_n, self.correct_sum, self.correct_n = z(), z(), z(), z(), z()
        self.n = torch.zeros((), dtype=torch.int64, device=device)
        # label accuracy against the probe's ``answers`` (LabelSpace, sampled/scored): hits / judged
        self.label_hits: Optional[torch.Tensor] = None
        self.label_judged: Optional[torch.Tensor] = None
        # scored mode: per prompt, the model's logits were NaN or +inf where a prefix is read
        self.nonfinite: Optional[torch.Tensor] = None

    def add(self, buckets: torch.Tensor, rewards: Optional[torch.Tensor], correct: Optional[torch.Tensor]) -> None:
        one = torch.ones(buckets.shape[0], dtype=torch.float64, device=self.count.device)
        buckets = buckets.to(self.count.device)
        self.count.index_add_(0, buckets, one)
        self.n += buckets.shape[0]
        for values, total, seen in (
            (rewards, self.reward_sum, self.reward_n),
            (correct, self.correct_sum, self.correct_n),
        ):
            if values is None:
                continue
            values = values.to(self.count.device, torch.float64)
            finite = torch.isfinite(values)
            total.index_add_(0, buckets, torch.where(finite, values, 0.0))
            seen.index_add_(0, buckets, finite.to(torch.float64))

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.count, self.reward_sum, self.reward_n, self.correct_sum, self.correct_n])

    def load_stacked(self, t: torch.Tensor) -> None:
        self.count, self.reward_sum, self.reward_n, self.correct_sum, self.correct_n = t.unbind(0)


class FormatProbe(ScoringProbe):
    """Records the distribution of output formats, its entropy, and detects its collapse.

    Three sources, one probe (``mode``):

    * ``"rollout"`` (RL, no extra compute): completions the training step already produced are read
      from its output dict (``on_train_batch_end``'s ``outputs``; with manual optimization, what
      ``training_step`` returns) under ``completions_key``: a list of strings, or token ids (a
      ``[B, T]`` tensor or lists of ints) decoded with ``tokenizer``. Per-completion rewards are
      read from ``rewards_key`` and correctness from ``correct_key`` when present. One record per
      ``every_n_steps`` optimizer steps pools every rollout since the previous record; its step is
      the global step of the weights that produced the latest rollouts.
    * ``"sampled"`` (SFT or RL): every ``every_n_steps`` optimizer steps, before the update, draw
      ``n_samples`` completions for each of the fixed ``prompts`` with the built-in sampler
      (``sampler``) or a user ``generate_fn(module, prompts) -> completions per prompt``; the
      training RNG state and module modes are left untouched.
    * ``"scored"`` (SFT, sampling-free): the probability of each format's continuation prefixes
      after each prompt, in one batched no-grad pass through the scoring engine. The record's
      distribution is the mean over prompts of ``[P(prefixes of format k | prompt)]_k`` plus the
      remaining mass as "other"; with a :class:`~probes.formats.spec.LabelSpace` that is the mass on
      each declared answer versus everything else.

    With a :class:`~probes.formats.spec.LabelSpace` the records also carry the output-space statistics
    (Kung & Peng 2023, arXiv 2305.11383), 0-d each: ``label_mass`` (``1 - unclassified``: the
    probability mass, or share of completions, on the label set), ``chance`` (``1 / n_labels``: a
    uniform guess over the labels), ``label_accuracy``, ``majority`` (share of prompts whose answer
    is the most frequent answer), ``acc_minus_chance`` and ``acc_minus_majority``. With
    ``answers=`` (one label per prompt; sampled and scored modes), ``label_accuracy`` is, in scored
    mode, the share of prompts whose most probable label (argmax of P(label | prompt) over the
    labels; ties: earlier label) is the answer, and in sampled mode the share of completions that
    answer with the prompt's label. Without ``answers`` it is the overall share of correct
    completions from ``correct_key`` / ``correct_fn`` (NaN when none is given) and ``majority`` is
    NaN.

    Metrics per record (see ``docs/records.md``): ``dist`` (shares of every format and of
    ``other``, summing to 1), ``entropy_nats``, ``entropy_bits``, ``norm_entropy``,
    ``eff_formats`` (``exp(H)``), ``dominant``, ``dominant_share``, ``kl_from_first``
    (``KL(current || first valid record)``), ``unclassified`` (the ``other`` share), ``n``
    (completions counted; 0 in scored mode), ``mean_reward`` and ``accuracy`` per bucket (NaN where
    unknown) and ``collapsed``. The entropy family, the dominant format and the KL are computed over
    the named formats only, renormalised (the distribution among classified outputs), unless
    ``include_other=True`` makes "other" a category too. Records without classified outputs carry
    NaN statistics and ``dominant = -1``.

    Collapse: see :mod:`probes.formats.collapse`. On the record where collapse is declared, ``on_collapse``
    decides: ``"warn"`` (a :class:`~probes.formats.collapse.FormatCollapseWarning`), ``"stop"`` (stops
    training after the current step) or ``"raise"`` (a :class:`~probes.formats.collapse.FormatCollapseError`);
    the message names the format, its share, the step and the thresholds. The per-record decision
    is agreed across ranks by a vote every rank takes part in (``TrainingContext.any_rank``),
    and rollout counts are summed over ranks first, so every rank sees the same distribution.

    Args:
        spec: a :class:`~probes.formats.spec.FormatSpec`, a :class:`~probes.formats.spec.LabelSpace`, or a
            list of :class:`~probes.formats.spec.Format`.
        mode: ``"rollout"``, ``"sampled"`` or ``"scored"``.
        name: namespace of the metrics and the ``state_key``.
        every_n_steps: record every this many optimizer steps, or a
            :class:`~probes.core.schedule.ReadSchedule` (plus once when training ends).
        completions_key: rollout mode: key of the completions in the training step output.
        rewards_key: rollout mode: key of per-completion rewards (optional in the output).
        correct_key: rollout mode: key of per-completion correctness (optional in the output).
        reward_threshold: when no correctness is given, count a completion correct when its reward
            is ``>= reward_threshold`` (None: accuracy stays NaN).
        tokenizer: decodes token-id completions; encodes prompts in sampled and scored modes.
        pad_id: rollout mode: token id stripped from the end of token-id completions.
        prompts: sampled and scored modes: the fixed probe prompts (text).
        n_samples: sampled mode: completions per prompt.
        sampler: sampled mode: :class:`~probes.formats.sampling.SamplerConfig` of the built-in sampler (its
            fixed seed gives every record the same random numbers, which makes the differences
            between records less noisy).
        generate_fn: sampled mode: ``(module, prompts) -> completions per prompt`` instead of the
            built-in sampler; run in eval mode under ``no_grad`` with the RNG state restored after.
        reward_fn: sampled mode: ``(prompt_index, completion) -> float`` reward, optional.
        correct_fn: sampled mode: ``(prompt_index, completion) -> bool``, optional.
        answers: with a :class:`~probes.formats.spec.LabelSpace`, sampled and scored modes: the correct
            label of each prompt (a label or its index), for ``label_accuracy`` and ``majority``.
        scoring: the :class:`~probes.core.options.ScoringOptions` (``model``, ``logits_fn``, ``bos_id``
            prepended to every prompt; in scored mode also ``token_budget`` and the rest); each may
            also be passed as a keyword argument (``model="model"``).
        include_other: count "other" as a category in the entropy, dominant format and KL.
        collapse: the :class:`~probes.formats.collapse.CollapseCriterion`, or None to switch detection off.
        on_collapse: ``"warn"``, ``"stop"`` or ``"raise"``.
        log_scalars: also log a few scalars through the Trainer's loggers.
        log_items: also log every bucket's share (``probes/<name>/share/<format>``, ``other``
            included) through the loggers: True for up to 64 buckets, or an int cap.

    Raises:
        ValueError: invalid arguments for the mode (named in the message), e.g. scored mode with a
            format that declares no prefixes, or collapse detection over a single format without
            ``include_other``.

    Example::

        probe = FormatProbe(ECHO_CHAMBER_MATH, mode="rollout", completions_key="completions",
                            collapse=CollapseCriterion(tau=0.95, patience=3), on_collapse="stop")
        trainer = Trainer(callbacks=[probe])
    """

    kind = "FormatProbe"

    def __init__(
        self,
        spec: Union[FormatSpec, LabelSpace, Sequence[Format]],
        *,
        mode: Mode = "rollout",
        name: str = "format",
        every_n_steps: Union[int, ReadSchedule] = 1,
        completions_key: str = "completions",
        rewards_key: Optional[str] = "rewards",
        correct_key: Optional[str] = "correct",
        reward_threshold: Optional[float] = None,
        tokenizer: Any = None,
        pad_id: Optional[int] = None,
        prompts: Optional[Sequence[str]] = None,
        n_samples: int = 16,
        sampler: Optional[SamplerConfig] = None,
        generate_fn: Optional[GenerateFn] = None,
        reward_fn: Optional[CompletionFn] = None,
        correct_fn: Optional[CompletionFn] = None,
        answers: Optional[Sequence[Union[str, int]]] = None,
        include_other: bool = False,
        collapse: Optional[CollapseCriterion] = CollapseCriterion(),  # noqa: B008 (frozen dataclass)
        on_collapse: Literal["warn", "stop", "raise"] = "warn",
        log_scalars: bool = True,
        log_items: bool | int = False,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="FormatProbe"))
        if mode not in ("rollout", "sampled", "scored"):
            raise ValueError(f"Expected `mode` to be 'rollout', 'sampled' or 'scored', got {mode!r}.")
        self.label_space = spec if isinstance(spec, LabelSpace) else None
        self.spec = as_format_spec(spec)
        self.mode: Mode = mode
        self.include_other = bool(include_other)
        self.log_scalars = log_scalars
        self._item_cap = self.items_to_log(log_items)
        self.model_path = self.scoring.model
        self.logits_fn = self.scoring.logits_fn
        self.bos_id = self.scoring.bos_id
        self._init_collapse(collapse, on_collapse)
        self._init_outputs(completions_key, rewards_key, correct_key, reward_threshold, pad_id)
        self._init_text(tokenizer, generate_fn)
        self._init_sampling(prompts, n_samples, sampler, generate_fn, reward_fn, correct_fn)
        self.answers = self._check_answers(answers)
        if mode == "scored":
            self._build_scorer()
        self._state = CollapseState()
        self._first: Optional[torch.Tensor] = None
        self._tally: Optional[FormatTally] = None  # this rank's rollouts since the last update
        self._pooled: Optional[FormatTally] = None  # summed over ranks, since the last record
        self._batch_step = -1
        self.last_reason = ""
        self._nonfinite = NonFiniteMonitor(self.state_key, [f"prompt {i}" for i in range(len(self.prompts or ()))])

    # --- construction phases --------------------------------------------------------------------

    def _init_collapse(self, collapse: Optional[CollapseCriterion], on_collapse: str) -> None:
        """The collapse detector and what to do at an onset."""
        if on_collapse not in ("warn", "stop", "raise"):
            raise ValueError(f"Expected `on_collapse` to be 'warn', 'stop' or 'raise', got {on_collapse!r}.")
        if collapse is not None and not isinstance(collapse, CollapseCriterion):
            raise ValueError(f"Expected `collapse` to be a CollapseCriterion or None, got {collapse!r}.")
        if collapse is not None and len(self.spec) == 1 and not self.include_other:
            raise ValueError(
                f"Collapse detection over the single format {self.spec.names[0]!r} is trivial: its share among"
                " classified outputs is always 1. Pass include_other=True to measure it against everything else,"
                " add formats, or pass collapse=None."
            )
        self.criterion = collapse
        self.on_collapse = on_collapse

    def _init_outputs(
        self,
        completions_key: str,
        rewards_key: Optional[str],
        correct_key: Optional[str],
        reward_threshold: Optional[float],
        pad_id: Optional[int],
    ) -> None:
        """Where rollout mode finds completions, rewards and correctness in a training-step output."""
        if reward_threshold is not None and not (
            isinstance(reward_threshold, (int, float)) and math.isfinite(reward_threshold)
        ):
            raise ValueError(f"Expected `reward_threshold` to be a finite number or None, got {reward_threshold!r}.")
        self.completions_key = completions_key
        self.rewards_key = rewards_key
        self.correct_key = correct_key
        self.reward_threshold = reward_threshold
        self.pad_id = pad_id

    def _init_text(self, tokenizer: Any, generate_fn: Optional[GenerateFn]) -> None:
        """The encoder (prompts, prefixes) and decoder (token-id completions) each mode needs."""
        mode = self.mode
        # encoders and decoders are small classes, not closures: the probe stays picklable (ddp_spawn)
        self._encode = _Encoder(tokenizer) if mode != "rollout" and tokenizer is not None else None
        needs_decode = mode == "rollout" or (mode == "sampled" and generate_fn is None)
        can_decode = callable(getattr(tokenizer, "decode", None))
        self._decode = _Decoder(tokenizer) if tokenizer is not None and (needs_decode or can_decode) else None

    def _init_sampling(
        self,
        prompts: Optional[Sequence[str]],
        n_samples: int,
        sampler: Optional[SamplerConfig],
        generate_fn: Optional[GenerateFn],
        reward_fn: Optional[CompletionFn],
        correct_fn: Optional[CompletionFn],
    ) -> None:
        """The fixed prompts (sampled and scored modes) and how sampled mode draws and judges."""
        self.n_samples = positive_int(n_samples, "n_samples")
        self.sampler = sampler or SamplerConfig()
        self.generate_fn = generate_fn
        self.reward_fn = reward_fn
        self.correct_fn = correct_fn
        self.prompts: list[str] = []
        if self.mode in ("sampled", "scored"):
            self.prompts = self._check_prompts(prompts)
        if self.mode == "sampled" and generate_fn is None and (self._encode is None or self._decode is None):
            raise ValueError(
                "Sampled mode with the built-in sampler needs `tokenizer=` (to encode prompts and decode"
                " completions); or pass generate_fn=(module, prompts) -> completions."
            )

    # --- construction helpers -------------------------------------------------------------------

    def _check_answers(self, answers: Optional[Sequence[Union[str, int]]]) -> Optional[list[int]]:
        """Each prompt's answer as a label index; None without answers."""
        if answers is None:
            return None
        if self.label_space is None:
            raise ValueError(
                "`answers=` needs a LabelSpace spec (the answers are labels); got a format spec. Pass"
                " LabelSpace([...]) or drop `answers`."
            )
        if self.mode == "rollout":
            raise ValueError(
                "`answers=` is for the sampled and scored modes (one answer per fixed prompt); in rollout mode"
                " pass per-completion correctness under `correct_key`."
            )
        if isinstance(answers, str) or len(answers) != len(self.prompts):
            raise ValueError(
                f"Expected `answers` to hold one label per prompt ({len(self.prompts)} prompts), got {answers!r}."
            )
        labels = list(self.label_space.labels)
        out = []
        for i, a in enumerate(answers):
            if isinstance(a, str) and a in labels:
                out.append(labels.index(a))
            elif isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(labels):
                out.append(a)
            else:
                raise ValueError(
                    f"Answer #{i} ({a!r}) is not one of the labels {labels} nor an index in [0, {len(labels) - 1}]."
                )
        return out

    def _check_prompts(self, prompts: Optional[Sequence[str]]) -> list[str]:
        if prompts is None or isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError(
                f"Mode {self.mode!r} needs `prompts`: a non-empty list of prompt strings, got {prompts!r}."
            )
        out = list(prompts)
        for i, p in enumerate(out):
            if not isinstance(p, str) or p == "":
                raise ValueError(f"Prompt #{i}: expected a non-empty string, got {p!r}.")
        return out

    def _build_scorer(self) -> None:
        self.spec.require_prefixes()
        if self._encode is None:
            raise ValueError("Scored mode needs `tokenizer=` to tokenize prompts and continuation prefixes.")
        pairs, owner_prompt, owner_format = [], [], []
        for pi, prompt in enumerate(self.prompts):
            for fi, fmt in enumerate(self.spec.formats):
                for xi, prefix in enumerate(fmt.prefixes):
                    pairs.append(ProbePair(f"{pi}:{fmt.name}:{xi}", prompt, prefix))
                    owner_prompt.append(pi)
                    owner_format.append(fi)
        items = tokenize_pairs(ProbeSet(pairs, separator=""), self._encode, bos_id=self.bos_id)
        self.requests = items
        self._owner = (torch.tensor(owner_prompt), torch.tensor(owner_format))

    # --- description and state ------------------------------------------------------------------

    def describe(self) -> Mapping[str, Any]:
        c = self.criterion
        return {
            **super().describe(),
            "mode": self.mode,
            "formats": [f.name for f in self.spec.formats],
            "other": self.spec.other,
            "spec": self.label_space.to_json() if self.label_space is not None else self.spec.to_json(),
            "include_other": self.include_other,
            **self.schedule.describe(),
            "prompts": list(self.prompts),
            "n_samples": self.n_samples if self.mode == "sampled" else 0,
            "collapse": None if c is None else {"tau": c.tau, "eps": c.eps, "patience": c.patience},
            "on_collapse": self.on_collapse,
            "answers": None if self.answers is None else [self.spec.names[a] for a in self.answers],
            "metrics": {
                "dist": "share of each format, then 'other' (scored: mean probability over prompts)",
                "entropy_nats": "Shannon entropy (nats) over the named formats, renormalised",
                "entropy_bits": "Shannon entropy (bits)",
                "norm_entropy": "entropy / log(number of categories)",
                "eff_formats": "effective number of formats exp(H)",
                "dominant": "index of the most frequent format (-1: no classified output)",
                "dominant_share": "its share",
                "kl_from_first": "KL(current || first record) in nats",
                "unclassified": "share of 'other'",
                "n": "completions counted (0 in scored mode)",
                "mean_reward": "mean reward per bucket (NaN where unknown)",
                "accuracy": "share correct per bucket (NaN where unknown)",
                "collapsed": "the collapse detector's state after this record",
                **(_LABEL_METRICS if self.label_space is not None else {}),
            },
        }

    @property
    def collapse_state(self) -> CollapseState:
        """The collapse detector's state (first collapse step and format, current streak...)."""
        return self._state

    def state_dict(self) -> dict[str, Any]:
        """Primitives and CPU tensors only (loads with ``torch.load(weights_only=True)``).

        Version 2 adds ``formats`` and the rollouts pooled (over ranks) since the last record
        (``pooled`` ``[5, n_formats + 1]`` float64 sums and ``pooled_n``), which are identical on
        every rank, so rank zero's copy in the checkpoint is right for all of them.
        """
        first = self._first.detach().cpu() if self._first is not None else torch.empty(0)
        pooled = self._pooled
        return {
            "version": _STATE_VERSION,
            "formats": list(self.spec.names),
            "last_step": self.schedule.last_step,
            "n_records": self.schedule.n_readings,
            "first_dist": first,
            "collapse": self._state.state_dict(),
            "pooled": pooled.stacked().detach().cpu() if pooled is not None else torch.empty(0),
            "pooled_n": int(pooled.n) if pooled is not None else 0,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; keys missing from older versions take their defaults.

        Raises:
            ValueError: the checkpoint tracked other formats.
        """
        version = int(state_dict.get("version", 0))
        if version > _STATE_VERSION:
            rank_zero_warn(
                f"{self.state_key}: checkpoint state version {version} is newer than this library's {_STATE_VERSION}."
            )
        names = state_dict.get("formats")
        if names is not None and list(names) != list(self.spec.names):
            raise ValueError(
                f"{self.state_key}: the checkpoint tracks formats {list(names)} but this probe tracks"
                f" {list(self.spec.names)}; resume with the same formats, or give this probe another `name`."
            )
        self.schedule.load_state_dict(
            {"last_step": state_dict.get("last_step", -1), "n_readings": state_dict.get("n_records", 0)}
        )
        first = state_dict.get("first_dist")
        self._first = first.clone() if isinstance(first, torch.Tensor) and first.numel() > 0 else None
        self._state = CollapseState.from_state_dict(state_dict.get("collapse", {}))
        pooled = state_dict.get("pooled")
        self._pooled = None
        if isinstance(pooled, torch.Tensor) and pooled.numel() > 0:
            k = len(self.spec) + 1
            if tuple(pooled.shape) != (5, k):
                raise ValueError(
                    f"{self.state_key}: the checkpoint's pooled rollouts have shape {list(pooled.shape)}, expected"
                    f" [5, {k}] for {k - 1} formats and 'other'."
                )
            self._pooled = FormatTally(k, torch.device("cpu"))
            self._pooled.load_stacked(pooled.to(torch.float64).clone())
            self._pooled.n = torch.tensor(int(state_dict.get("pooled_n", 0)), dtype=torch.int64)

    # --- events ---------------------------------------------------------------------------------

    @property
    def reads_model(self) -> bool:  # type: ignore[override]
        return self.mode != "rollout"  # rollouts come from training outputs: no forward of the probe's own

    def attach(self, ctx: TrainingContext) -> None:
        if self.mode == "scored":  # validates vocabulary and lengths before training starts
            super().attach(ctx)
        elif self.mode == "sampled":
            resolve_module(ctx.root, self.model_path)

    def check(self, ctx: TrainingContext) -> None:
        if self.mode == "scored":
            super().check(ctx)

    def observe_batch(self, ctx: TrainingContext, batch: Any) -> None:
        self._batch_step = ctx.step

    def observe_outputs(self, ctx: TrainingContext, outputs: Any) -> None:
        if self.mode != "rollout":
            return
        self.add_rollouts(outputs)
        if ctx.step > self._batch_step:  # an update just happened (at the same batch on every rank)
            self._pool(ctx)
            if self.schedule.due(ctx.step):
                self._flush_rollouts(ctx, step=self._batch_step, log=True)

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        if self.mode != "rollout" and self.schedule.wants(ctx.step, final=False):
            self.take_reading(ctx)

    def take_reading(self, ctx: TrainingContext) -> None:
        """A sampled or scored reading at ``ctx.step`` (rollout mode records from training outputs)."""
        tally = self._tally_of(self.read_scores(ctx)) if self.mode == "scored" else self._read_sampled(ctx.root)
        self._finish(ctx, tally, step=ctx.step, log=not ctx.final)

    def training_ended(self, ctx: TrainingContext) -> None:
        if self.mode == "rollout":
            pending = any(t is not None and int(t.n) > 0 for t in (self._tally, self._pooled))
            if ctx.world_size > 1:  # pooling reduces across ranks: every rank must take part
                pending = ctx.any_rank(pending)
            if pending:
                self._pool(ctx)
                self._flush_rollouts(ctx, step=self._batch_step, log=False)
        elif self.schedule.wants(ctx.step, final=True):
            self.take_reading(ctx)
        self._nonfinite.flush()

    # --- reading --------------------------------------------------------------------------------

    def add_rollouts(self, outputs: Any) -> None:
        """Classify the completions in one training-step output and add them to the pending record.

        Raises:
            ValueError: the output is not a mapping with ``completions_key``, or rewards and
                completions differ in number.
        """
        if not isinstance(outputs, Mapping) or self.completions_key not in outputs:
            keys = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                f"FormatProbe(mode='rollout') found no {self.completions_key!r} in the training step output"
                f" ({keys}). Return a dict such as {{'loss': loss, {self.completions_key!r}: completions}} from"
                " training_step, or set `completions_key=`."
            )
        texts = self._texts(outputs[self.completions_key])
        rewards = self._per_completion(outputs, self.rewards_key, len(texts))
        correct = self._per_completion(outputs, self.correct_key, len(texts))
        if correct is None and rewards is not None and self.reward_threshold is not None:
            correct = torch.where(
                torch.isfinite(rewards), (rewards >= self.reward_threshold).to(rewards.dtype), rewards
            )
        device = rewards.device if rewards is not None else torch.device("cpu")
        if self._tally is None:
            self._tally = FormatTally(len(self.spec) + 1, device)
        buckets = torch.tensor(self.spec.classify_many(texts), dtype=torch.long)
        self._tally.add(buckets, rewards, correct)

    def _texts(self, value: Any) -> list[str]:
        if isinstance(value, str):
            raise ValueError(
                f"Expected {self.completions_key!r} to be a list of completions, got a single string {value[:40]!r}."
            )
        if isinstance(value, torch.Tensor):
            if value.dim() != 2 or value.is_floating_point():
                raise ValueError(
                    f"Expected {self.completions_key!r} as a [batch, length] integer tensor of token ids, got"
                    f" {value.dtype} of shape {list(value.shape)}."
                )
            value = value.tolist()
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return items
        texts = []
        for v in items:
            if isinstance(v, torch.Tensor):
                v = v.tolist()
            if not isinstance(v, (list, tuple)) or not all(isinstance(t, int) for t in v):
                raise ValueError(
                    f"Expected {self.completions_key!r} to hold strings or token-id sequences, got an item"
                    f" {type(v).__name__} {v!r}."
                )
            if self._decode is None:
                raise ValueError(
                    f"Completions under {self.completions_key!r} are token ids; pass `tokenizer=` to decode them."
                )
            ids = list(v)
            if self.pad_id is not None:
                while ids and ids[-1] == self.pad_id:
                    ids.pop()
            texts.append(self._decode(ids))
        return texts

    def _per_completion(self, outputs: Mapping[str, Any], key: Optional[str], n: int) -> Optional[torch.Tensor]:
        if key is None or key not in outputs or outputs[key] is None:
            return None
        value = outputs[key]
        t = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(list(value), dtype=torch.float64)
        if t.numel() != n or sum(d > 1 for d in t.shape) > 1:
            raise ValueError(
                f"Expected {key!r} to hold one value per completion ({n} completions), got shape {list(t.shape)}."
            )
        return t.reshape(-1).to(torch.float64)

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> FormatTally:  # type: ignore[override]
        """One reading in sampled or scored mode (no Trainer needed); sums per bucket.

        Args:
            module: the LightningModule (or model) to read.
            gather: scored mode under DDP: the all-gather that joins the ranks' slices (the
                callback passes the strategy's); not needed on a single process.
        """
        if self.mode == "scored":
            return self._tally_of(super().read(module, gather=gather))
        if self.mode == "sampled":
            return self._read_sampled(module)
        raise RuntimeError("Rollout mode reads training-step outputs; use add_rollouts().")

    def _tally_of(self, scores: ItemScores) -> FormatTally:
        """The scored-mode tally of the scores of :attr:`requests`."""
        p = scores.logp_seq.double().exp()
        k = len(self.spec)
        owner_prompt, owner_format = (t.to(p.device) for t in self._owner)
        mass = torch.zeros(len(self.prompts), k, dtype=torch.float64, device=p.device)
        mass.index_put_((owner_prompt, owner_format), p, accumulate=True)
        rest = (1.0 - mass.sum(dim=1, keepdim=True)).clamp_min(0.0)
        tally = FormatTally(k + 1, p.device)
        tally.count = torch.cat([mass, rest], dim=1).mean(dim=0)
        bad = torch.zeros(len(self.prompts), dtype=torch.long, device=p.device)
        tally.nonfinite = bad.index_add_(0, owner_prompt, scores.nonfinite.long()) > 0
        if self.answers is not None:  # most probable label per prompt (first on ties) against its answer
            answer = torch.tensor(self.answers, device=p.device)
            tally.label_hits = (mass.argmax(dim=1) == answer).sum().to(torch.float64)
            tally.label_judged = torch.tensor(float(len(self.prompts)), dtype=torch.float64, device=p.device)
        nan = torch.full((k + 1,), math.nan, dtype=torch.float64, device=p.device)
        tally.reward_sum, tally.reward_n = nan.clone(), torch.ones_like(nan)
        tally.correct_sum, tally.correct_n = nan.clone(), torch.ones_like(nan)
        return tally

    def _read_sampled(self, module: nn.Module) -> FormatTally:
        lm = resolve_module(module, self.model_path)
        with fsdp2_gathered(module, self.model_path):  # FSDP2: every rank samples the same prompts
            if self.generate_fn is not None:
                with isolated_eval(lm):
                    per_prompt = self.generate_fn(lm, list(self.prompts))
            else:
                assert self._encode is not None and self._decode is not None
                per_prompt = sample_texts(
                    lm,
                    self.prompts,
                    self.n_samples,
                    encode=self._encode,
                    decode=self._decode,
                    config=self.sampler,
                    logits_fn=self.logits_fn,
                    bos_id=self.bos_id,
                )
        if len(per_prompt) != len(self.prompts):
            raise ValueError(
                f"generate_fn returned completions for {len(per_prompt)} prompts, expected {len(self.prompts)}."
            )
        owners = [i for i, comps in enumerate(per_prompt) for _ in comps]
        texts = self._texts([c for comps in per_prompt for c in comps])
        rewards = correct = None
        if self.reward_fn is not None:
            rewards = torch.tensor([float(self.reward_fn(i, t)) for i, t in zip(owners, texts)], dtype=torch.float64)
        if self.correct_fn is not None:
            correct = torch.tensor(
                [float(bool(self.correct_fn(i, t))) for i, t in zip(owners, texts)], dtype=torch.float64
            )
        elif rewards is not None and self.reward_threshold is not None:
            correct = (rewards >= self.reward_threshold).to(torch.float64)
        tally = FormatTally(len(self.spec) + 1, torch.device("cpu"))
        buckets = self.spec.classify_many(texts)
        if texts:
            tally.add(torch.tensor(buckets, dtype=torch.long), rewards, correct)
        if self.answers is not None:
            hits = sum(1 for i, b in zip(owners, buckets) if b == self.answers[i])
            tally.label_hits = torch.tensor(float(hits), dtype=torch.float64)
            tally.label_judged = torch.tensor(float(len(texts)), dtype=torch.float64)
        return tally

    # --- records --------------------------------------------------------------------------------

    def _pool(self, ctx: TrainingContext) -> None:
        """Add this rank's rollouts since the last update, summed over ranks, to the pooled tally.

        Called after every optimizer step (and at the end of training) on every rank at the same
        hook, so the one all-reduce matches; the pooled tally is then the same on every rank and can
        be checkpointed from rank zero.
        """
        k = len(self.spec) + 1
        device = module_device(ctx.root)
        local = self._tally or FormatTally(k, device)
        self._tally = None
        n_row = torch.zeros(1, k, dtype=torch.float64, device=local.count.device)
        n_row[0, 0] = local.n.to(torch.float64)  # exact below 2**53 completions
        packed = torch.cat([local.stacked(), n_row])  # [6, k]: one collective for sums and count
        if ctx.world_size > 1:
            packed = ctx.reduce_sum(packed.to(device))
        pooled = self._pooled
        if pooled is None:
            pooled = FormatTally(k, packed.device)
        pooled.load_stacked(pooled.stacked().to(packed.device) + packed[:5])
        pooled.n = pooled.n.to(packed.device) + packed[5, 0].round().to(torch.int64)
        self._pooled = pooled

    def _flush_rollouts(self, ctx: TrainingContext, *, step: int, log: bool) -> None:
        tally = self._pooled or FormatTally(len(self.spec) + 1, torch.device("cpu"))
        self._pooled = None
        self._finish(ctx, tally, step=step, log=log)

    def metrics(self, tally: FormatTally) -> dict[str, torch.Tensor]:
        """The record tensors (except ``collapsed``) of one tally, on the tally's device."""
        k = len(self.spec)
        total = tally.count.sum()
        dist = tally.count / total  # NaN when nothing was counted
        part = dist if self.include_other else dist[:k]
        reference = self._first.to(part.device) if self._first is not None else None
        summary = distribution_summary(part, reference)
        out: dict[str, torch.Tensor] = {"dist": dist.float()}
        for key in ("entropy_nats", "entropy_bits", "norm_entropy", "eff_formats", "dominant_share", "kl_from_first"):
            out[key] = summary[key].float()
        out["dominant"] = summary["dominant"]
        out["unclassified"] = dist[k].float()
        out["n"] = tally.n.clone() if self.mode != "scored" else torch.zeros((), dtype=torch.int64, device=dist.device)
        out["mean_reward"] = (tally.reward_sum / tally.reward_n).float()
        out["accuracy"] = (tally.correct_sum / tally.correct_n).float()
        names = _ORDER
        if self.label_space is not None:
            out.update(self._label_metrics(tally, dist[k]))
            names = _ORDER + tuple(_LABEL_METRICS)
        return {name: out[name] for name in names}

    def _label_metrics(self, tally: FormatTally, unclassified: torch.Tensor) -> dict[str, torch.Tensor]:
        """The output-space statistics of a LabelSpace probe (0-d float32 tensors)."""
        device = unclassified.device
        assert self.label_space is not None
        if tally.label_hits is not None and tally.label_judged is not None:
            acc = tally.label_hits.to(device) / tally.label_judged.to(device)  # NaN for nothing judged
        elif self.mode == "scored":  # no answers: nothing to judge against
            acc = torch.tensor(math.nan, dtype=torch.float64, device=device)
        else:  # correctness given per completion (rollout / sampled without answers), pooled over buckets
            acc = tally.correct_sum.nansum().to(device) / tally.correct_n.sum().to(device)
        chance = torch.tensor(1.0 / len(self.label_space), dtype=torch.float64, device=device)
        if self.answers is not None:
            counts = torch.bincount(torch.tensor(self.answers), minlength=len(self.label_space))
            majority = torch.tensor(float(counts.max()) / len(self.answers), dtype=torch.float64, device=device)
        else:
            majority = torch.tensor(math.nan, dtype=torch.float64, device=device)
        acc = acc.to(torch.float64)
        return {
            "label_mass": (1.0 - unclassified.double()).float(),
            "chance": chance.float(),
            "label_accuracy": acc.float(),
            "majority": majority.float(),
            "acc_minus_chance": (acc - chance).float(),
            "acc_minus_majority": (acc - majority).float(),
        }

    def _finish(self, ctx: TrainingContext, tally: FormatTally, *, step: int, log: bool) -> None:
        if self._first is None:  # the reference of kl_from_first: the first record with classified outputs
            part = tally.count if self.include_other else tally.count[: len(self.spec)]
            if float(part.sum()) > 0:
                self._first = (part / part.sum()).detach().clone()
        tensors = self.metrics(tally)
        if tally.nonfinite is not None:  # scored mode: NaN shares for prompts the model cannot be read on
            tensors["n_nonfinite"] = tally.nonfinite.sum()
            self._nonfinite.observe(step, tally.nonfinite)
        collapsed = self._update_collapse(ctx, tensors, step)
        tensors["collapsed"] = torch.tensor(collapsed, device=tensors["dist"].device)
        self.schedule.mark(step)
        self.emit(step, tensors, epoch=ctx.epoch)
        if log and self.log_scalars and ctx.log is not None:
            prefix = f"probes/{self.source}"
            for key in ("norm_entropy", "dominant_share", "unclassified"):
                ctx.log(f"{prefix}/{key}", tensors[key])
            names = [f.name for f in self.spec.formats] + [self.spec.other]
            self.log_items(ctx, "share", names, tensors["dist"], self._item_cap)

    def _update_collapse(self, ctx: TrainingContext, tensors: Mapping[str, torch.Tensor], step: int) -> bool:
        if self.criterion is None:
            return False
        share, norm_h, dominant, unclassified = torch.stack(
            [
                tensors["dominant_share"].double(),
                tensors["norm_entropy"].double(),
                tensors["dominant"].double(),
                tensors["unclassified"].double(),
            ]
        ).tolist()  # one host transfer per record: acting on the decision needs it
        local = collapse_condition(share, norm_h, self.criterion)
        if not self.include_other and not 1.0 - unclassified >= self.criterion.min_classified:
            local = None  # almost everything is "other": no evidence either way
        # every rank calls both collectives, never inside rank-zero-only code
        evidence = ctx.any_rank(local is not None)
        met = ctx.any_rank(bool(local))
        onset, reason, self._state = evaluate_collapse(
            self._state,
            met if evidence else None,
            step=step,
            dominant=int(dominant),
            share=share,
            norm_entropy=norm_h,
            criterion=self.criterion,
            names=self.spec.names,
            basis="the outputs" if self.include_other else "the classified outputs",
        )
        self.last_reason = reason
        if onset:
            message = f"{self.state_key}: {reason}"
            if self.on_collapse == "raise":
                raise FormatCollapseError(message)
            if self.on_collapse == "stop":
                ctx.request_stop()
                rank_zero_info(f"{message} Stopping training.")
            else:
                rank_zero_warn(message, category=FormatCollapseWarning)
        return self._state.collapsed


_LABEL_METRICS = {
    "label_mass": "LabelSpace: 1 - unclassified, the mass (scored) or share of completions on the label set",
    "chance": "LabelSpace: 1 / n_labels, the accuracy of a uniform guess over the labels",
    "label_accuracy": "LabelSpace: share of prompts (scored) or completions (sampled) answering with the correct"
    " label; without answers, the share of correct completions (NaN if unknown)",
    "majority": "LabelSpace: share of prompts whose answer is the most frequent answer (NaN without answers)",
    "acc_minus_chance": "label_accuracy - chance",
    "acc_minus_majority": "label_accuracy - majority",
}

_ORDER = (
    "dist",
    "entropy_nats",
    "entropy_bits",
    "norm_entropy",
    "eff_formats",
    "dominant",
    "dominant_share",
    "kl_from_first",
    "unclassified",
    "n",
    "mean_reward",
    "accuracy",
)
