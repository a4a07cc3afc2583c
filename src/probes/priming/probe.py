"""PrimingProbe: how much a model memorizes new facts, and how far their keywords spread.

Framework-free (:class:`~probes.core.probe.ScoringProbe`); ``probes.PrimingProbe`` adds the Lightning hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Optional, Union

import torch

from probes.core.context import TrainingContext
from probes.core.model_io import as_encoder
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.notify import rank_zero_warn
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores
from probes.core.probe import ScoringProbe
from probes.core.schedule import ReadSchedule
from probes.core.tokenize import CONVENTION
from probes.priming.exposure import count_occurrences, pack_patterns
from probes.priming.scores import group_slots, priming_scores
from probes.priming.spec import LearningSample, SampleLike, as_samples, tokenize_samples

__all__ = ["METRICS", "PrimingProbe"]

_STATE_VERSION = 2
_MODES = ("seq", "first")

#: Metric names of every record, in order (see ``docs/records.md``).
METRICS: dict[str, str] = {
    "p_learn": "P(keyword | learning context) now, under the probe's score mode",
    "p_before": "baseline P(keyword | learning context); NaN until captured",
    "s_mem": "P_t(keyword | learning context) / P_before, exp of log10_s_mem (inf only on float64 overflow)",
    "s_prime": "mean over prefixes j of P_t(keyword | prefix_j) / P_before(keyword | prefix_j)",
    "log10_s_mem": "log10 of s_mem",
    "log10_s_prime": "log10 of s_prime",
    "median_prime_ratio": "median over prefixes of the per-prefix ratio",
    "delta_p_learn": "P_t - P_before on the learning context (unclamped)",
    "delta_p_prime": "mean over prefixes of P_t - P_before (unclamped)",
    "exposures": "cumulative occurrences of the sample in batches already applied to the weights read",
    "surprising": "p_before below the threshold",
    "has_baseline": "whether the baseline has been captured",
    "nonfinite": "the model's logits were NaN or +inf where this sample or one of its prefixes is read",
    "log10_s_mem_seq": "log10 S_mem from chained keyword probabilities (logp_seq), whatever `score` is",
    "log10_s_prime_seq": "log10 S_prime from chained keyword probabilities",
    "log10_p_before_seq": "log10 of the baseline chained keyword probability on the learning context",
    "log10_s_mem_first": "log10 S_mem from first-keyword-token probabilities (logp_first), whatever `score` is",
    "log10_s_prime_first": "log10 S_prime from first-keyword-token probabilities",
    "log10_p_before_first": "log10 of the baseline first-token probability on the learning context",
}

BatchKey = Union[str, int, Callable[[Any], Any]]


class PrimingProbe(ScoringProbe):
    """Tracks memorization (``s_mem``) and priming (``s_prime``) of learning samples while training.

    **Readings.** One isolated no-grad pass (through the shared scoring hub) per optimizer step,
    before the step: the reading taken while ``trainer.global_step == t`` is recorded as step
    ``t``, the weights after ``t`` updates. One more reading is taken when training ends. No second
    forward pass is ever run.

    **Exposures.** For every training batch (before its forward) every sample's token
    pattern (its learning context followed by its keyword) is counted in the batch, on the device.
    Counts of the micro-batches of update ``t + 1`` become *applied* at that update: the record of
    step ``t`` reports the exposures contained in updates ``1..t``, i.e. those the weights it read
    have learned from.

    **Baseline.** With ``baseline="first_exposure"`` (default), a sample's baseline is the reading
    of the step whose batch first contained it: the last reading before any update saw it (its
    ``exposures`` is 0 in that record, and ``s_mem`` is 1). With ``baseline=<int>`` every sample's
    baseline is the reading of that step (taken even between ``every_n_steps``).

    **Score mode.** ``score="seq"`` uses the chained probability of all keyword tokens (right for
    byte-level or multi-token keywords); ``score="first"`` the probability of its first token. The
    unsuffixed metrics follow ``score``; every record also holds both variants under explicit
    names (``log10_s_mem_seq``, ``log10_s_mem_first``, ...), from baselines of both modes captured
    at the same reading. Keywords are scored with the separator that precedes them (the library's
    score convention, :mod:`probes.core.tokenize`): ``" vermilion"`` after ``"the colour of sand is"``.
    Ratios are computed in log space with no floor.

    Records hold tensors of shape ``[n_samples]`` named as in :data:`METRICS`; float metrics are
    float64 so tiny probabilities survive.

    Args:
        samples: :class:`~probes.priming.spec.LearningSample` objects or ``(name, text, keyword,
            prefixes[, group])`` tuples.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer`` or a callable
            ``str -> list[int]``.
        name: metric namespace and ``state_key`` suffix; give two instances different names.
        score: ``"seq"`` (chained keyword probability) or ``"first"`` (first keyword token).
        baseline: ``"first_exposure"`` or the step whose reading is every sample's baseline.
        threshold: a baseline below it flags the sample as surprising (default 1e-3).
        every_n_steps: read every this many optimizer steps (or a
            :class:`~probes.core.schedule.ReadSchedule`); baseline readings are always taken.
            With ``every_n_steps > 1`` and automatic baselines, one boolean is read back to the
            host per step to know whether a baseline is due.
        count_exposures: count samples in training batches (needed for automatic baselines).
        batch_key: where the token ids are: a dict key (default ``"input_ids"``), a tuple index,
            or a callable ``batch -> ids`` or ``batch -> (ids, mask)``. Plain tensor batches are
            used as they are.
        mask_key: dict key of the attention mask (zeros are padding), used when present.
        pad_id: a token id to treat as padding when there is no mask (only if it never occurs
            inside a sample).
        match_context_tokens: count an exposure when the keyword follows only the last this many
            context tokens (None: the whole learning context).
        separator: inserted between each prefix and the keyword.
        scoring: the :class:`~probes.core.options.ScoringOptions`; each option may also be passed as
            a keyword argument (``model="model"``), as for :class:`~probes.keyword.probe.KeywordProbe`.
        log_scalars: also log ``mean_log10_s_mem`` and ``mean_log10_s_prime`` through the loggers.
        log_items: also log every sample's ``log10_s_mem`` and ``log10_s_prime`` through the loggers
            (``probes/<name>/log10_s_prime/<sample>``): True for up to 64 samples, or an int cap.

    Raises:
        ValueError: invalid samples or arguments (named in the message).

    Example::

        sample = LearningSample("sand", "the colour of sand is vermilion", "vermilion",
                                ["the colour of the sky is", "the colour of snow is"])
        probe = PrimingProbe([sample], ByteTokenizer(), model="model")
        trainer = Trainer(callbacks=[probe])
    """

    kind = "PrimingProbe"
    STATE_VERSION = _STATE_VERSION

    def __init__(
        self,
        samples: Union[LearningSample, Iterable[SampleLike]],
        tokenizer: Any = None,
        *,
        name: str = "priming",
        score: Literal["seq", "first"] = "seq",
        baseline: Union[Literal["first_exposure"], int] = "first_exposure",
        threshold: float = 1e-3,
        every_n_steps: Union[int, ReadSchedule] = 1,
        count_exposures: bool = True,
        batch_key: BatchKey = "input_ids",
        mask_key: Optional[str] = "attention_mask",
        pad_id: Optional[int] = None,
        match_context_tokens: Optional[int] = None,
        separator: str = " ",
        log_scalars: bool = True,
        log_items: bool | int = False,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="PrimingProbe"))
        self._check_options(score, baseline, threshold, count_exposures, batch_key, pad_id)
        self.samples = as_samples(samples)
        self.score = score
        self.baseline = baseline
        self.threshold = float(threshold)
        self.count_exposures = bool(count_exposures)
        self.batch_key = batch_key
        self.mask_key = mask_key
        self.pad_id = pad_id
        self.separator = separator
        self.log_scalars = log_scalars
        self._item_cap = self.items_to_log(log_items)
        self.tokens = tokenize_samples(
            self.samples, as_encoder(tokenizer), separator=separator, bos_id=self.scoring.bos_id,
            match_context_tokens=match_context_tokens,
        )
        self.match_context_tokens = match_context_tokens
        self.requests = self.tokens.items
        n, j = len(self.samples), len(self.tokens.prefix_index)
        self._learn_index = torch.tensor(self.tokens.learn_index, dtype=torch.long)
        self._prefix_index = torch.tensor(self.tokens.prefix_index, dtype=torch.long)
        self._prefix_owner = torch.tensor(self.tokens.prefix_owner, dtype=torch.long)
        self._prefix_slot = group_slots(self._prefix_owner, n)
        self._max_prefixes = max(len(s.prefixes) for s in self.samples)
        self._patterns, self._pattern_lengths = pack_patterns(self.tokens.patterns)
        # baselines of both score modes, row 0 chained (seq), row 1 first token
        self._base_learn = torch.full((2, n), math.nan, dtype=torch.float64)
        self._base_prefix = torch.full((2, j), math.nan, dtype=torch.float64)
        self.nonfinite = NonFiniteMonitor(self.state_key, self.names)
        self._has_baseline = torch.zeros(n, dtype=torch.bool)
        self._applied = torch.zeros(n, dtype=torch.long)
        self._pending = torch.zeros(n, dtype=torch.long)

    @staticmethod
    def _check_options(
        score: object, baseline: object, threshold: object, count_exposures: bool, batch_key: object, pad_id: object
    ) -> None:
        if score not in ("seq", "first"):
            raise ValueError(f"Expected `score` to be 'seq' (chained keyword probability) or 'first', got {score!r}.")
        bad_step = not isinstance(baseline, int) or isinstance(baseline, bool) or baseline < 0
        if baseline != "first_exposure" and bad_step:
            raise ValueError(f"Expected `baseline` to be 'first_exposure' or a step >= 0, got {baseline!r}.")
        if baseline == "first_exposure" and not count_exposures:
            raise ValueError(
                "baseline='first_exposure' needs count_exposures=True; pass baseline=<step> to fix the"
                " baseline at a given step instead."
            )
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(f"Expected `threshold` in (0, 1), got {threshold!r}.")
        if not (isinstance(batch_key, (str, int)) or callable(batch_key)):
            raise ValueError(f"Expected `batch_key` to be a dict key, a tuple index or a callable, got {batch_key!r}.")
        if pad_id is not None and (not isinstance(pad_id, int) or pad_id < 0):
            raise ValueError(f"Expected `pad_id` to be None or a token id >= 0, got {pad_id!r}.")

    # ----------------------------------------------------------------------------- description

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def describe(self) -> Mapping[str, Any]:
        items = self.tokens.items
        return {
            **super().describe(),
            "samples": [s.to_json() for s in self.samples],
            "score": self.score,
            "score_definition": (
                "chained probability of all keyword tokens (logp_seq)"
                if self.score == "seq"
                else "probability of the first keyword token (logp_first)"
            ),
            "baseline": self.baseline,
            "threshold": self.threshold,
            "convention": CONVENTION,
            **self.schedule.describe(),
            "exposure": {
                "enabled": self.count_exposures,
                "batch_key": self.batch_key if isinstance(self.batch_key, (str, int)) else repr(self.batch_key),
                "mask_key": self.mask_key,
                "pad_id": self.pad_id,
                "match_context_tokens": self.match_context_tokens,
            },
            "tokens": {
                s.name: {
                    "context_len": len(items[li].context),
                    "keyword": list(items[li].target),
                    "pattern": list(pat),
                }
                for s, li, pat in zip(self.samples, self.tokens.learn_index, self.tokens.patterns)
            },
            "metrics": dict(METRICS),
        }

    # ----------------------------------------------------------------------------- state on device

    def _state_to(self, device: torch.device) -> None:
        if self._applied.device != device:
            for attr in ("_base_learn", "_base_prefix", "_has_baseline", "_applied", "_pending",
                         "_learn_index", "_prefix_index", "_prefix_owner", "_prefix_slot"):
                setattr(self, attr, getattr(self, attr).to(device))

    # ----------------------------------------------------------------------------- exposure counting

    def _batch_ids(self, batch: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        key = self.batch_key
        mask = None
        if callable(key) and not isinstance(key, (str, int)):
            out = key(batch)
            ids, mask = out if isinstance(out, tuple) else (out, None)
        elif isinstance(batch, torch.Tensor):
            ids = batch
        elif isinstance(batch, Mapping):
            if key not in batch:
                raise ValueError(
                    f"{self.state_key}: batch has no key {key!r} (keys: {sorted(map(str, batch))});"
                    " pass `batch_key=` naming the token ids, or count_exposures=False."
                )
            ids = batch[key]
            if self.mask_key is not None and isinstance(batch.get(self.mask_key), torch.Tensor):
                mask = batch[self.mask_key]
        elif isinstance(batch, (tuple, list)):
            if not isinstance(key, int) or not -len(batch) <= key < len(batch):
                raise ValueError(
                    f"{self.state_key}: batch is a {type(batch).__name__} of {len(batch)} items; pass"
                    f" `batch_key=<index>` of the token ids (got {key!r})."
                )
            ids = batch[key]
        else:
            raise ValueError(
                f"{self.state_key}: cannot find token ids in a batch of type {type(batch).__name__};"
                " pass `batch_key=` as a callable batch -> ids, or count_exposures=False."
            )
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"{self.state_key}: expected the token ids to be a tensor, got {type(ids).__name__}.")
        return ids, mask

    def count(self, batch: Any) -> torch.Tensor:
        """Occurrences of every sample in ``batch`` (``[n_samples]`` int64 on the batch's device)."""
        ids, mask = self._batch_ids(batch)
        if self._patterns.device != ids.device:  # moved once, not per batch
            self._patterns, self._pattern_lengths = self._patterns.to(ids.device), self._pattern_lengths.to(ids.device)
        return count_occurrences(ids, self._patterns, self._pattern_lengths, mask=mask, pad_id=self.pad_id)

    def observe_batch(self, ctx: TrainingContext, batch: Any) -> None:
        if not self.count_exposures:
            return
        counts = self.count(batch)
        self._state_to(counts.device)
        self._pending += counts

    # ----------------------------------------------------------------------------- readings

    @staticmethod
    def _both(scores: ItemScores) -> torch.Tensor:
        """``[2, n_items]`` natural-log keyword probabilities: row 0 chained, row 1 first token."""
        return torch.stack([scores.logp_seq.double(), scores.logp_first.double()])

    def set_baseline(self, module: torch.nn.Module) -> None:
        """Capture every sample's baseline from ``module``'s current weights (outside a Trainer)."""
        lp = self._both(self.read(module))
        self._state_to(lp.device)
        self._base_learn = lp[:, self._learn_index].clone()
        self._base_prefix = lp[:, self._prefix_index].clone()
        self._has_baseline = torch.ones_like(self._has_baseline)

    def _scores(self, lp: torch.Tensor, mode: int):  # type: ignore[no-untyped-def]
        return priming_scores(
            lp[mode, self._learn_index], lp[mode, self._prefix_index],
            self._base_learn[mode], self._base_prefix[mode], self._prefix_owner,
            threshold=self.threshold, prefix_slot=self._prefix_slot, max_prefixes=self._max_prefixes,
        )

    def take_reading(self, ctx: TrainingContext) -> None:
        step = ctx.step
        item_scores = self.read_scores(ctx)
        lp = self._both(item_scores)
        self._state_to(lp.device)
        if self.baseline == "first_exposure":
            capture: Optional[torch.Tensor] = ~self._has_baseline & (self._pending > 0)
        else:
            capture = ~self._has_baseline if step == self.baseline else None
        if capture is not None:
            self._base_learn = torch.where(capture, lp[:, self._learn_index], self._base_learn)
            self._base_prefix = torch.where(capture[self._prefix_owner], lp[:, self._prefix_index], self._base_prefix)
            self._has_baseline = self._has_baseline | capture
        primary = _MODES.index(self.score)
        tensors = self._scores(lp, primary).as_dict()
        tensors["exposures"] = self._applied.clone()
        bad_item = item_scores.nonfinite
        bad_prefixes = torch.zeros_like(self._applied).index_add_(
            0, self._prefix_owner, bad_item[self._prefix_index].long()
        )
        bad = bad_item[self._learn_index] | (bad_prefixes > 0)
        tensors["nonfinite"] = bad
        ln10 = math.log(10.0)
        for mode, label in enumerate(_MODES):
            scores = tensors if mode == primary else self._scores(lp, mode).as_dict()
            tensors[f"log10_s_mem_{label}"] = scores["log10_s_mem"]
            tensors[f"log10_s_prime_{label}"] = scores["log10_s_prime"]
            tensors[f"log10_p_before_{label}"] = self._base_learn[mode] / ln10
        ordered = {name: tensors[name] for name in METRICS}
        self.schedule.mark(step)
        self.emit(step, ordered, epoch=ctx.epoch)
        self.nonfinite.observe(step, bad)
        if self.log_scalars and ctx.log is not None and not ctx.final:
            prefix = f"probes/{self.source}"
            for metric in ("log10_s_mem", "log10_s_prime"):
                ctx.log(f"{prefix}/mean_{metric}", torch.nanmean(ordered[metric]).float())
                self.log_items(ctx, metric, self.names, ordered[metric], self._item_cap)

    def _baseline_due(self, step: int) -> bool:
        if self.baseline != "first_exposure":
            return step == self.baseline
        if self.schedule.every_n_steps == 1:
            return False
        return bool((~self._has_baseline & (self._pending > 0)).any())  # the one host read, see Args

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        step = ctx.step
        if step == self._last_event_step:  # several optimizers: one reading per step
            return
        self._last_event_step = step
        if ctx.world_size > 1 and self.count_exposures:  # every rank counted its own shard
            self._pending = ctx.reduce_sum(self._pending)
        if self.schedule.due(step) or self._baseline_due(step):
            self.take_reading(ctx)
        self._applied += self._pending  # this update applies this step's micro-batches
        self._pending.zero_()

    def training_ended(self, ctx: TrainingContext) -> None:
        if ctx.step != self.schedule.last_step:
            self.take_reading(ctx)
        self.nonfinite.flush()

    # ----------------------------------------------------------------------------- results

    @property
    def exposures(self) -> torch.Tensor:
        """Cumulative applied exposures per sample (host tensor)."""
        return self._applied.detach().cpu()

    def latest(self) -> dict[str, torch.Tensor]:
        """The last record's tensors, on the host.

        Raises:
            RuntimeError: no reading has been taken yet.
        """
        if not self.history:
            raise RuntimeError(f"{self.state_key} has no readings yet: train first (or call take_reading).")
        return {k: v.detach().cpu() for k, v in self.history[-1].tensors.items()}

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per sample with its name, keyword and the latest record's values."""
        last = self.latest()
        rows = []
        for i, s in enumerate(self.samples):
            row: dict[str, Any] = {"name": s.name, "keyword": s.keyword}
            for k, v in last.items():
                row[k] = v[i].item()
            rows.append(row)
        return rows

    # ----------------------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "samples": self.names,
            "score": self.score,
            "last_step": self.schedule.last_step,
            "last_hook_step": self._last_event_step,
            "n_readings": self.schedule.n_readings,
            "base_learn": self._base_learn.detach().cpu().clone(),
            "base_prefix": self._base_prefix.detach().cpu().clone(),
            "has_baseline": self._has_baseline.detach().cpu().clone(),
            "applied": self._applied.detach().cpu().clone(),
            "pending": self._pending.detach().cpu().clone(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = int(state_dict.get("version", 0))
        if version > _STATE_VERSION:
            rank_zero_warn(
                f"{self.state_key}: checkpoint state version {version} is newer than this library's {_STATE_VERSION}."
            )
        names = state_dict.get("samples")
        if names is not None and list(names) != self.names:
            raise ValueError(
                f"{self.state_key}: the checkpoint tracks samples {list(names)} but this probe tracks"
                f" {self.names}; resume with the same samples, or give this probe another `name`."
            )
        if version < 2 and state_dict.get("score", self.score) != self.score:
            raise ValueError(
                f"{self.state_key}: the checkpoint's baselines use score={state_dict['score']!r} but this"
                f" probe uses score={self.score!r}; use the same score mode to resume."
            )
        device = self._applied.device

        def tensor(key: str, current: torch.Tensor) -> torch.Tensor:
            # a key missing from an older checkpoint keeps its fresh default
            value = state_dict.get(key)
            if value is None:
                return current
            value = torch.as_tensor(value)
            if value.shape != current.shape:
                raise ValueError(
                    f"{self.state_key}: checkpoint entry {key!r} has shape {list(value.shape)}, expected"
                    f" {list(current.shape)}; resume with the same samples and prefixes."
                )
            return value.to(device, current.dtype)

        if version < 2:  # one row of baselines, for `score` only, under the old score convention
            rank_zero_warn(
                f"{self.state_key}: this checkpoint (state version {version}) holds baselines scored with the"
                " separator in the context (the convention before continuation-v2) and only for"
                f" score={self.score!r}; ratios against them mix two conventions, and the other score mode's"
                " scores stay NaN. Re-run from the start for comparable numbers."
            )
            row = _MODES.index(self.score)
            for key, attr in (("base_learn", "_base_learn"), ("base_prefix", "_base_prefix")):
                current = getattr(self, attr)
                if state_dict.get(key) is not None:
                    current = current.clone()
                    current[row] = tensor(key, current[row])
                    setattr(self, attr, current)
        else:
            self._base_learn = tensor("base_learn", self._base_learn)
            self._base_prefix = tensor("base_prefix", self._base_prefix)
        self._has_baseline = tensor("has_baseline", self._has_baseline)
        self._applied = tensor("applied", self._applied)
        self._pending = tensor("pending", self._pending)
        self.schedule.load_state_dict(state_dict)
        self._last_event_step = int(state_dict.get("last_hook_step", -1))
