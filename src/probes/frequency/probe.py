"""FrequencyProbe: how often and how closely the training stream touches each probe item, online.

Framework-free (:class:`~probes.core.probe.ScoringProbe`); ``probes.FrequencyProbe`` adds the
Lightning hooks. The math is in :mod:`probes.frequency.measures`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional, Union

import torch
from torch import nn

from probes.core.context import TrainingContext
from probes.core.isolation import isolated_eval
from probes.core.model_io import as_encoder, make_logits_fn, resolve_module
from probes.core.options import ScoringOptions
from probes.core.probe import ScoringProbe
from probes.core.schedule import ReadSchedule
from probes.frequency import measures as M
from probes.frequency.spec import FrequencyItem, ItemLike, ItemTokens, as_items, item_requests, tokenize_items

__all__ = ["METRICS", "FrequencyProbe"]

_STATE_VERSION = 1
#: rows of the per-item sums (pending, last step, cumulative)
_SUMS = ("keyword_count", "ngram_count", "lex_sum", "lex_above", "jaccard_sum", "rep_sum", "rep_above")
#: rows of the per-item maxima of one step
_MAXES = ("lex_max", "jaccard_max", "rep_max")

#: Metric names of every record (see ``docs/records.md``).
METRICS: dict[str, str] = {
    "keyword_count": "cumulative keyword occurrences (any form, at word boundaries) in batches applied (updates 1..t)",
    "ngram_count": "cumulative occurrences of the item's distinct context n-grams in batches applied",
    "lex_sum": "cumulative sum over training samples of the lexical containment |G_item & G_sample| / |G_item|",
    "lex_above": "cumulative count of samples whose containment >= lex_threshold",
    "jaccard_sum": "cumulative sum over samples of the n-gram Jaccard similarity",
    "rep_sum": "cumulative sum over samples of the cosine of mean-pooled hidden states at `layer` (NaN without)",
    "rep_above": "cumulative count of samples whose cosine >= rep_threshold (NaN without a layer)",
    "lex_max": "highest containment over the samples of update t (NaN at step 0)",
    "lex_mean": "mean containment over the samples of update t",
    "jaccard_max": "highest Jaccard over the samples of update t",
    "jaccard_mean": "mean Jaccard over the samples of update t",
    "rep_max": "highest cosine over the samples of update t",
    "rep_mean": "mean cosine over the samples of update t",
    "samples_seen": "cumulative training samples (rows) applied, summed over ranks (scalar)",
    "logp": "natural log P(keyword | context) now (chained over keyword tokens)",
    "delta_logp": "logp minus logp at the probe's first reading",
    "nonfinite": "the model's output was not finite where the item is read",
}

BatchKey = Union[str, int, Callable[[Any], Any]]


class _StopForward(Exception):
    """Raised by the layer hook during the items' pass: the forward stops at the layer."""


def _token_text(tokenizer: Any) -> Optional[Callable[[int], str]]:
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return lambda i: str(tokenizer.convert_ids_to_tokens([i])[0])
    if hasattr(tokenizer, "id_to_token"):
        return lambda i: str(tokenizer.id_to_token(i) or "")
    if hasattr(tokenizer, "decode"):
        return lambda i: str(tokenizer.decode([i]))
    return None


def _vocab_of(tokenizer: Any) -> Optional[int]:
    for attr in ("vocab_size", "get_vocab_size"):
        v = getattr(tokenizer, attr, None)
        v = v() if callable(v) else v
        if isinstance(v, int) and v > 0:
            n = len(tokenizer) if hasattr(tokenizer, "__len__") else v
            return max(v, n)
    return None


class FrequencyProbe(ScoringProbe):
    """Concept frequency and sample similarity per item, measured on the training stream, next to
    the item's keyword log-probability.

    **Counting** (every training batch, on the device, before its forward): occurrences of each
    item's keyword at word boundaries in any context, in both tokenized forms (with and without a
    leading space; one occurrence per end position), and occurrences of its context's distinct
    n-grams. **Lexical similarity** per sample: n-gram containment and Jaccard of the item's text
    against the sample (exact bit-packed n-gram codes, see :mod:`probes.frequency.measures`).
    **Representational similarity** (with ``layer=``): cosine between each sample's hidden state
    at ``layer`` mean-pooled over its real tokens, captured by a forward hook from the training
    forward itself, and each item's, from an isolated no-grad pass over the items' texts once per
    optimizer step (before the step's first micro-batch, with the weights that forward uses).
    This pass is the probe's own, not the shared scoring hub's (a departure to fold into the hub).

    Micro-batches of update ``t + 1`` are *applied* at that update; the record of step ``t`` holds
    cumulative sums over updates ``1..t`` and the max/mean of the samples of update ``t``. Under
    DDP the sums are added across ranks with one ``reduce_sum`` per optimizer step; the maxima use
    ``ctx.gather`` where the loop gives one (else they are the rank's own).

    Args:
        items: the probe items, one object or a list mixing them (:func:`probes.frequency.spec.as_items`):
            keyword pairs (:class:`~probes.keyword.spec.ProbePair`, a :class:`~probes.keyword.spec.ProbeSet`
            or ``(name, context, keyword[, group])`` tuples), learning samples
            (:class:`~probes.priming.spec.LearningSample`, or a PrimingProbe for its samples), format
            prompts (:class:`~probes.frequency.spec.FormatPrompts`, or a FormatProbe with prompts: one
            item per prompt, format and marker) and benchmark questions (a named
            :class:`~probes.choice.spec.Question`, a Benchmark, a BenchmarkSuite or a BenchmarkProbe: the
            correct option's text is the keyword). Each item's keyword, context and name by type are
            in :mod:`probes.frequency.spec`; ``describe()["items"]`` lists them with their ``type``.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer`` or an object with
            ``encode``/``decode`` (token texts for word boundaries come from it).
        name: record source and ``state_key`` suffix.
        layer: dotted path of the submodule (inside ``model=``) whose output is the hidden state
            for representational similarity, e.g. ``"blocks.1"``; None skips it.
        ngram: n-gram size for context counts and lexical similarity (1..3).
        lex_threshold, rep_threshold: a sample counts in ``lex_above`` / ``rep_above`` at or above.
        states_every: refresh the items' hidden states every this many optimizer steps (1: with
            the weights of every step; larger values trade staleness for the cost of the item pass,
            which forwards every item's text).
        word_boundaries: check word boundaries (needs token texts from the tokenizer).
        vocab_size: size of the boundary tables (default: the tokenizer's).
        every_n_steps: read every this many optimizer steps (counting runs on every batch).
        batch_key, mask_key: where the token ids and the attention mask are in a batch.
        log_scalars: log the mean keyword count and mean delta logp.
        scoring: :class:`~probes.core.options.ScoringOptions` (or its fields as keyword arguments).

    Raises:
        ValueError: invalid items or arguments (named in the message).

    Example::

        probe = FrequencyProbe([("sand", "the colour of sand is", "vermilion")], tokenizer,
                               model="model", layer="blocks.1")
        mixed = FrequencyProbe([priming_probe, FormatPrompts(prompts, ECHO_CHAMBER_MATH), benchmark], tokenizer)
    """

    kind = "FrequencyProbe"
    STATE_VERSION = _STATE_VERSION

    def __init__(
        self,
        items: Union[ItemLike, Iterable[ItemLike]],
        tokenizer: Any,
        *,
        name: str = "frequency",
        layer: Optional[str] = None,
        ngram: int = 3,
        lex_threshold: float = 0.5,
        rep_threshold: float = 0.9,
        states_every: int = 1,
        word_boundaries: bool = True,
        vocab_size: Optional[int] = None,
        every_n_steps: Union[int, ReadSchedule] = 1,
        batch_key: BatchKey = "input_ids",
        mask_key: Optional[str] = "attention_mask",
        log_scalars: bool = True,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="FrequencyProbe"))
        if not (isinstance(ngram, int) and 1 <= ngram <= M.MAX_N):
            raise ValueError(f"Expected `ngram` in 1..{M.MAX_N}, got {ngram!r}.")
        for value, what in ((lex_threshold, "lex_threshold"), (rep_threshold, "rep_threshold")):
            if not (isinstance(value, (int, float)) and -1.0 <= value <= 1.0):
                raise ValueError(f"Expected `{what}` in [-1, 1], got {value!r}.")
        if not (isinstance(states_every, int) and not isinstance(states_every, bool) and states_every >= 1):
            raise ValueError(f"Expected `states_every` to be an int >= 1 (optimizer steps), got {states_every!r}.")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"Expected `layer` to be a submodule path such as 'blocks.1', or None; got {layer!r}.")
        encode = as_encoder(tokenizer)
        if encode is None:
            raise ValueError("FrequencyProbe needs a tokenizer (it tokenizes the keywords and the item texts).")
        self.items: tuple[FrequencyItem, ...] = as_items(items)
        self.layer = layer
        self.states_every = states_every
        self.ngram = ngram
        self.lex_threshold = float(lex_threshold)
        self.rep_threshold = float(rep_threshold)
        self.batch_key = batch_key
        self.mask_key = mask_key
        self.log_scalars = log_scalars
        self.tokens: list[ItemTokens] = tokenize_items(self.items, encode, n=ngram)
        self.requests = item_requests(self.items, encode, bos_id=self.scoring.bos_id)
        self._forms, self._form_lengths = M.pack_forms([t.forms for t in self.tokens])
        self._ctx_table, self._ctx_inc = M.ngram_table([t.context_codes for t in self.tokens])
        self._txt_table, self._txt_inc = M.ngram_table([t.text_codes for t in self.tokens])
        self.word_boundaries = bool(word_boundaries)
        self._starts: Optional[torch.Tensor] = None
        self._ends: Optional[torch.Tensor] = None
        if self.word_boundaries:
            text = _token_text(tokenizer)
            vocab = vocab_size or _vocab_of(tokenizer)
            if text is None or vocab is None:
                raise ValueError(
                    "word_boundaries=True needs token texts and a vocabulary size from the tokenizer; pass a"
                    " tokenizer with decode/convert_ids_to_tokens and `vocab_size=`, or word_boundaries=False."
                )
            self._starts, self._ends = M.boundary_tables(text, int(vocab))
        n = len(self.tokens)
        self._pending = torch.zeros((len(_SUMS), n), dtype=torch.float64)
        self._pending_max = torch.full((len(_MAXES), n), -math.inf, dtype=torch.float64)
        self._pending_n = torch.zeros(1, dtype=torch.float64)
        self._applied = torch.zeros_like(self._pending)
        self._applied_n = torch.zeros(1, dtype=torch.float64)
        self._last = torch.full_like(self._pending, math.nan)
        self._last_max = torch.full_like(self._pending_max, math.nan)
        self._last_n = torch.zeros(1, dtype=torch.float64)
        self._base_logp = torch.full((n,), math.nan, dtype=torch.float64)
        # representational similarity
        self._hook: Any = None
        self._model: Optional[nn.Module] = None
        self._item_states: Optional[torch.Tensor] = None
        self._states_step = -1
        self._armed: Optional[tuple[Optional[torch.Tensor], int]] = None
        self._capture: Optional[list[torch.Tensor]] = None
        self._warned_shape = False

    # ----------------------------------------------------------------------------- description

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]

    def describe(self) -> Mapping[str, Any]:
        return {
            **super().describe(),
            "items": [it.to_json() for it in self.items],
            "item_types": [it.type for it in self.items],
            "layer": self.layer,
            "states_every": self.states_every,
            "ngram": self.ngram,
            "hashing": "n-gram code sum_k g_k * 2**(21*(n-1-k)) (bit packing, exact, ids < 2**21)",
            "lex_threshold": self.lex_threshold,
            "rep_threshold": self.rep_threshold,
            "word_boundaries": self.word_boundaries,
            "item_state_pass": "own isolated no-grad pass over the item texts (not the scoring hub)",
            **self.schedule.describe(),
            "forms": {t.name: [list(f) for f in t.forms] for t in self.tokens},
            "metrics": dict(METRICS),
        }

    # ----------------------------------------------------------------------------- device state

    def _state_to(self, device: torch.device) -> None:
        if self._pending.device == device:
            return
        for attr in ("_pending", "_pending_max", "_pending_n", "_applied", "_applied_n", "_last", "_last_max",
                     "_last_n", "_base_logp", "_forms", "_form_lengths", "_ctx_table", "_ctx_inc", "_txt_table",
                     "_txt_inc", "_starts", "_ends"):
            value = getattr(self, attr)
            if value is not None:
                setattr(self, attr, value.to(device))

    def _batch_ids(self, batch: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        key, mask = self.batch_key, None
        if callable(key) and not isinstance(key, (str, int)):
            out = key(batch)
            ids, mask = out if isinstance(out, tuple) else (out, None)
        elif isinstance(batch, torch.Tensor):
            ids = batch
        elif isinstance(batch, Mapping) and key in batch:
            ids = batch[key]
            if self.mask_key is not None and isinstance(batch.get(self.mask_key), torch.Tensor):
                mask = batch[self.mask_key]
        elif isinstance(batch, (tuple, list)) and isinstance(key, int) and -len(batch) <= key < len(batch):
            ids = batch[key]
        else:
            raise ValueError(
                f"{self.state_key}: cannot find the token ids in a batch of type {type(batch).__name__};"
                " pass `batch_key=` (a dict key, a tuple index or a callable batch -> ids or (ids, mask))."
            )
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"{self.state_key}: expected token ids of shape [batch, seq] with an integer dtype.")
        return ids, mask

    # ----------------------------------------------------------------------------- measures

    def measure(self, ids: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The lexical measures of one batch, on its device: ``keyword`` ``[B, I]`` int64
        occurrences, ``ngram`` ``[I]`` context n-gram occurrences, ``containment`` and ``jaccard``
        ``[B, I]`` float64."""
        self._state_to(ids.device)
        keyword = M.keyword_hits(
            ids, self._forms, self._form_lengths, mask=mask, starts_word=self._starts, ends_word=self._ends
        )
        codes, ok = M.ngram_codes(ids, self.ngram, mask=mask)
        ngram = M.context_ngram_counts(codes, ok, self._ctx_table, self._ctx_inc)
        present, sizes = M.sample_ngram_sets(codes, ok, self._txt_table)
        containment, jaccard = M.lexical_similarity(present, sizes, self._txt_inc)
        return {"keyword": keyword, "ngram": ngram, "containment": containment, "jaccard": jaccard}

    def observe_batch(self, ctx: TrainingContext, batch: Any) -> None:
        ids, mask = self._batch_ids(batch)
        m = self.measure(ids, mask)
        rows = ids.shape[0]
        lex, jac = m["containment"], m["jaccard"]
        add = torch.stack([
            m["keyword"].sum(0).double(), m["ngram"], lex.sum(0), (lex >= self.lex_threshold).sum(0).double(),
            jac.sum(0), torch.zeros_like(m["ngram"]), torch.zeros_like(m["ngram"]),
        ])
        self._pending += add
        self._pending_n += rows
        self._pending_max[0] = torch.maximum(self._pending_max[0], lex.max(0).values)
        self._pending_max[1] = torch.maximum(self._pending_max[1], jac.max(0).values)
        if self.layer is not None and self._model is not None:
            stale = self._states_step < 0 or ctx.step - self._states_step >= self.states_every
            if self._item_states is None or stale or ctx.step < self._states_step:
                self._item_states = self.item_states(self._model)
                self._states_step = ctx.step
            self._armed = (mask, rows)

    # ----------------------------------------------------------------------------- hidden states

    def attach(self, ctx: TrainingContext) -> None:
        super().attach(ctx)
        if self.layer is None:
            return
        self._model = resolve_module(ctx.root, self.scoring.model)
        try:
            target = self._model.get_submodule(self.layer)
        except AttributeError as err:
            raise ValueError(
                f"{self.state_key}: the model has no submodule {self.layer!r} for `layer=`; name one of"
                f" {[n for n, _ in self._model.named_children()]} (or a dotted path below them)."
            ) from err
        if self._hook is not None:
            self._hook.remove()
        self._hook = target.register_forward_hook(self._on_layer)

    def detach(self) -> None:
        """Remove the forward hook (training end does it)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _on_layer(self, module: nn.Module, args: Any, output: Any) -> None:
        h = output[0] if isinstance(output, (tuple, list)) else output
        if self._capture is not None:
            self._capture.append(h.detach())
            raise _StopForward  # the item pass needs nothing above the layer (no later blocks, no head)
        if self._armed is None or not torch.is_grad_enabled():
            return  # another probe's no-grad pass, or not a batch this probe saw
        mask, rows = self._armed
        self._armed = None
        if h.dim() != 3 or h.shape[0] != rows or self._item_states is None:
            if not self._warned_shape:
                self._warned_shape = True
                warnings.warn(
                    f"{self.state_key}: the output of layer {self.layer!r} has shape {list(h.shape)}, not"
                    f" [{rows}, T, C] for the batch; representational similarity is skipped for such batches.",
                    stacklevel=2,
                )
            return
        if mask is not None:
            mask = mask[:, : h.shape[1]]
        cos = M.pairwise_cosine(M.mean_pool(h.detach(), mask), self._item_states)  # [B, I]
        self._pending[5] += cos.sum(0)
        self._pending[6] += (cos >= self.rep_threshold).sum(0).double()
        self._pending_max[2] = torch.maximum(self._pending_max[2], cos.max(0).values)

    def item_states(self, model: nn.Module) -> torch.Tensor:
        """Mean-pooled hidden states ``[I, C]`` of the items' texts at ``layer`` (an isolated
        no-grad pass over ``model``, which must hold ``layer``; the forward stops at the layer).

        Raises:
            ValueError: no ``layer``.
        """
        if self.layer is None:
            raise ValueError(f"{self.state_key}: item states need `layer=`.")
        device = next(model.parameters()).device
        width = max(len(t.text_ids) for t in self.tokens)
        ids = torch.zeros((len(self.tokens), width), dtype=torch.long)
        mask = torch.zeros((len(self.tokens), width), dtype=torch.long)
        for i, t in enumerate(self.tokens):
            ids[i, : len(t.text_ids)] = torch.as_tensor(t.text_ids)
            mask[i, : len(t.text_ids)] = 1
        full = bool(mask.all())  # on the host, before the copy: no device sync
        ids, mask = ids.to(device), mask.to(device)
        forward = make_logits_fn(model, self.scoring.logits_fn)
        hook = None
        if self._hook is None:
            hook = model.get_submodule(self.layer).register_forward_hook(self._on_layer)
        self._capture = []
        try:
            with isolated_eval(model):
                try:
                    forward(ids, None if full else mask)
                except _StopForward:
                    pass
            captured = self._capture
        finally:
            self._capture = None
            if hook is not None:
                hook.remove()
        if not captured:
            raise ValueError(f"{self.state_key}: layer {self.layer!r} did not run in the model's forward.")
        return M.mean_pool(captured[0], mask)

    # ----------------------------------------------------------------------------- readings

    def _reduce(self, ctx: TrainingContext) -> None:
        if ctx.world_size <= 1:
            return
        n = self._pending.numel()
        packed = ctx.reduce_sum(torch.cat([self._pending.reshape(-1), self._pending_n]))
        self._pending = packed[:n].reshape(self._pending.shape).clone()
        self._pending_n = packed[n:].clone()
        if ctx.gather is not None:
            self._pending_max = ctx.gather(self._pending_max).reshape(-1, *self._pending_max.shape).amax(0)

    def before_optimizer_step(self, ctx: TrainingContext) -> None:
        if ctx.step == self._last_event_step:
            return
        self._last_event_step = ctx.step
        self._reduce(ctx)
        if self.schedule.wants(ctx.step, final=False):
            self.take_reading(ctx)
        self._applied += self._pending
        self._applied_n += self._pending_n
        self._last = self._pending.clone()
        self._last_n = self._pending_n.clone()
        self._last_max = torch.where(torch.isinf(self._pending_max), math.nan, self._pending_max)
        self._pending.zero_()
        self._pending_n.zero_()
        self._pending_max.fill_(-math.inf)

    def training_ended(self, ctx: TrainingContext) -> None:
        if self.schedule.wants(ctx.step, final=True):
            self.take_reading(ctx)
        self.detach()

    def take_reading(self, ctx: TrainingContext) -> None:
        scores = self.read_scores(ctx)
        logp = scores.logp_seq.double()
        self._state_to(logp.device)
        self._base_logp = torch.where(torch.isnan(self._base_logp), logp, self._base_logp)
        a, last, n_last = self._applied, self._last, self._last_n.clamp(min=1.0)
        has_rep = self.layer is not None
        nan = torch.full_like(logp, math.nan)
        tensors = {
            "keyword_count": a[0].round().long(),
            "ngram_count": a[1].round().long(),
            "lex_sum": a[2].clone(),
            "lex_above": a[3].round().long(),
            "jaccard_sum": a[4].clone(),
            "rep_sum": a[5].clone() if has_rep else nan,
            "rep_above": a[6].clone() if has_rep else nan,
            "lex_max": self._last_max[0].clone(),
            "lex_mean": last[2] / n_last,
            "jaccard_max": self._last_max[1].clone(),
            "jaccard_mean": last[4] / n_last,
            "rep_max": self._last_max[2].clone() if has_rep else nan,
            "rep_mean": last[5] / n_last if has_rep else nan,
            "samples_seen": self._applied_n[0].round().long(),
            "logp": logp,
            "delta_logp": logp - self._base_logp,
            "nonfinite": scores.nonfinite.bool(),
        }
        self.schedule.mark(ctx.step)
        self.emit(ctx.step, tensors, epoch=ctx.epoch)
        if self.log_scalars and ctx.log is not None and not ctx.final:
            ctx.log(f"probes/{self.source}/mean_keyword_count", a[0].mean().float())
            ctx.log(f"probes/{self.source}/mean_delta_logp", torch.nanmean(tensors["delta_logp"]).float())

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        def host(t: torch.Tensor) -> torch.Tensor:
            return t.detach().cpu().clone()

        return {
            "version": _STATE_VERSION,
            "items": self.names,
            **self.schedule.state_dict(),
            "last_hook_step": self._last_event_step,
            "pending": host(self._pending), "pending_max": host(self._pending_max), "pending_n": host(self._pending_n),
            "applied": host(self._applied), "applied_n": host(self._applied_n),
            "last": host(self._last), "last_max": host(self._last_max), "last_n": host(self._last_n),
            "base_logp": host(self._base_logp),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        names = state_dict.get("items")
        if names is not None and list(names) != self.names:
            raise ValueError(
                f"{self.state_key}: the checkpoint tracks items {list(names)} but this probe tracks {self.names};"
                " resume with the same items, or give this probe another `name`."
            )
        for key in ("pending", "pending_max", "pending_n", "applied", "applied_n", "last", "last_max", "last_n",
                    "base_logp"):
            value = state_dict.get(key)
            current = getattr(self, f"_{key}")
            if value is None:
                continue
            value = torch.as_tensor(value)
            if value.shape != current.shape:
                raise ValueError(f"{self.state_key}: checkpoint entry {key!r} has shape {list(value.shape)},"
                                 f" expected {list(current.shape)}.")
            setattr(self, f"_{key}", value.to(current.device, current.dtype))
        self._last_event_step = int(state_dict.get("last_hook_step", -1))
