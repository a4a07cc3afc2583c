"""KeywordProbe: P(keyword | context) for fixed probe pairs, read before every optimizer step.

Framework-free (:class:`~probes.core.probe.ScoringProbe`); ``probes.KeywordProbe`` is this class with
the Lightning hooks of :mod:`probes.integrations.lightning`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from probes.core.context import TrainingContext
from probes.core.model_io import as_encoder
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.options import ScoringOptions
from probes.core.probe import ScoringProbe
from probes.core.schedule import ReadSchedule
from probes.core.tokenize import CONVENTION
from probes.keyword.spec import ProbePair, ProbeSet, tokenize_pairs

__all__ = ["KeywordProbe"]


class KeywordProbe(ScoringProbe):
    """Records P(keyword | context) for every probe pair with the weights *before* each update.

    The reading before optimizer step ``t + 1`` (Lightning: ``on_before_optimizer_step`` while
    ``trainer.global_step == t``) is recorded as step ``t``: the before-update reading of update
    ``t + 1`` and the after-update reading of update ``t``. One more reading is taken when training
    ends, so the last update is seen. It reads once per optimizer step (with gradient accumulation
    and manual optimization); with several optimizers only the first call per step reads.

    The score convention (:mod:`probes.core.tokenize`): the context is tokenized as written and the
    separator belongs to the keyword, so ``p_first`` and ``logp_seq`` score ``" yellow"`` after
    ``"the colour of sand is"``, whether the tokenizer merges the space into the word or not.

    Each record holds, per pair (tensors of shape ``[n_pairs]``): ``p_first`` and ``logp_first``
    (the first keyword token), ``logp_seq`` (the chained log-probability of all keyword tokens,
    float64, no floor), ``rank`` (1-based rank of the first keyword token in the vocabulary; 0
    where the model's output was not finite) and ``nonfinite`` (NaN or +inf logits where the pair
    is read; its scores are then NaN, and the probe warns once).

    Args:
        pairs: a :class:`~probes.keyword.spec.ProbeSet`, or pairs / ``(name, context, keyword[, group])``
            tuples to build one.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable
            ``str -> list[int]``, or None when pairs are given as token ids.
        name: namespace of this probe's metrics and its ``state_key``; give two instances
            different names.
        every_n_steps: read every this many optimizer steps, or a
            :class:`~probes.core.schedule.ReadSchedule` (plus the final reading).
        separator: inserted between context and keyword when ``pairs`` is not a ProbeSet.
        scoring: the :class:`~probes.core.options.ScoringOptions` (``model``, ``logits_fn``, ``bos_id``,
            ``vocab_size``, ``max_positions``, ``truncation``, ``token_budget``); each may also be
            passed as a keyword argument (``model="model"``). Probes with equal options share one
            scoring pass per step.
        log_scalars: also log a few summary scalars through the Trainer's loggers.
        log_items: also log every pair's ``p_first`` and ``log10_p_seq`` through the loggers, as
            ``probes/<name>/p_first/<pair>`` and ``probes/<name>/log10_p_seq/<pair>``: True for up
            to 64 pairs, or an int cap (the run log always has every pair).
        threshold: probability under which a pair counts as surprising in the summary scalars.

    Raises:
        ValueError: invalid pairs, arguments, or tokenization (named in the message).

    Example::

        probe = KeywordProbe([("sand", "the colour of sand is", "yellow")], tokenizer, model="model")
        trainer = Trainer(callbacks=[probe])
    """

    kind = "KeywordProbe"

    def __init__(
        self,
        pairs: Union[ProbeSet, Iterable[Union[ProbePair, Sequence[Any]]]],
        tokenizer: Any = None,
        *,
        name: str = "keyword",
        every_n_steps: Union[int, ReadSchedule] = 1,
        separator: str = " ",
        threshold: float = 1e-3,
        log_scalars: bool = True,
        log_items: bool | int = False,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="KeywordProbe"))
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(f"Expected `threshold` in (0, 1), got {threshold!r}.")
        self.probe_set = pairs if isinstance(pairs, ProbeSet) else ProbeSet(pairs, separator=separator)
        self.items = self.requests = tokenize_pairs(self.probe_set, as_encoder(tokenizer), bos_id=self.scoring.bos_id)
        self.log_scalars = log_scalars
        self.threshold = float(threshold)
        self._item_cap = self.items_to_log(log_items)
        self.nonfinite = NonFiniteMonitor(self.state_key, self.probe_set.names)

    def describe(self) -> Mapping[str, Any]:
        return {
            **super().describe(),
            "probe_set": self.probe_set.to_json(),
            "tokens": {it.name: {"context_len": len(it.context), "keyword": list(it.target)} for it in self.items},
            "metrics": {
                "p_first": "P(first keyword token | context)",
                "logp_first": "ln P(first keyword token | context)",
                "logp_seq": "ln P(all keyword tokens | context), chained",
                "rank": "1-based rank of the first keyword token in the vocabulary; 0 where the output was not finite",
                "nonfinite": "the model's logits were NaN or +inf where this pair is read (its scores are NaN)",
            },
            "convention": CONVENTION,
            **self.schedule.describe(),
            "threshold": self.threshold,
        }

    def take_reading(self, ctx: TrainingContext) -> None:
        step = ctx.step
        scores = self.read_scores(ctx)
        self.schedule.mark(step)
        self.emit(
            step,
            {
                "p_first": scores.p_first,
                "logp_first": scores.logp_first,
                "logp_seq": scores.logp_seq,
                "rank": scores.rank,
                "nonfinite": scores.nonfinite,
            },
            epoch=ctx.epoch,
        )
        self.nonfinite.observe(step, scores.nonfinite)
        if ctx.final:
            self.nonfinite.flush()
        elif self.log_scalars and ctx.log is not None:
            prefix = f"probes/{self.source}"
            ctx.log(f"{prefix}/mean_log10_p_first", scores.logp_first.mean() / math.log(10))
            ctx.log(f"{prefix}/mean_logp_seq", scores.logp_seq.mean())
            self.log_items(ctx, "p_first", self.probe_set.names, scores.p_first, self._item_cap)
            log10_p_seq = scores.logp_seq / math.log(10)
            self.log_items(ctx, "log10_p_seq", self.probe_set.names, log10_p_seq, self._item_cap)
            ctx.log(f"{prefix}/frac_below_threshold", (scores.p_first < self.threshold).float().mean())
