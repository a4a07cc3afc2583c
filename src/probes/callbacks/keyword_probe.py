"""KeywordProbe: P(keyword | context) for fixed probe pairs, read before every optimizer step."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Optional, Union

import lightning.pytorch as pl
from torch import nn
from typing_extensions import override

from probes.adapters import LogitsFn, as_encoder
from probes.callbacks.base import ScheduledProbe
from probes.engine import ItemScores, tokenize_pairs
from probes.model_reader import ModelReader
from probes.nonfinite import NonFiniteMonitor
from probes.specs import ProbePair, ProbeSet
from probes.tokenization import CONVENTION

__all__ = ["KeywordProbe", "ModelReader"]


class KeywordProbe(ScheduledProbe):
    """Records P(keyword | context) for every probe pair with the weights *before* each update.

    The reading in ``on_before_optimizer_step`` while ``trainer.global_step == t`` is recorded as
    step ``t``: the before-update reading of update ``t + 1`` and the after-update reading of
    update ``t``. One more reading is taken when training ends, so the last update is seen. The
    hook fires once per optimizer step (with gradient accumulation and manual optimization); with
    several optimizers only the first call per step reads.

    The score convention (:mod:`probes.tokenization`): the context is tokenized as written and the
    separator belongs to the keyword, so ``p_first`` and ``logp_seq`` score ``" yellow"`` after
    ``"the colour of sand is"``, whether the tokenizer merges the space into the word or not.

    Each record holds, per pair (tensors of shape ``[n_pairs]``): ``p_first`` and ``logp_first``
    (the first keyword token), ``logp_seq`` (the chained log-probability of all keyword tokens,
    float64, no floor), ``rank`` (1-based rank of the first keyword token in the vocabulary; 0
    where the model's output was not finite) and ``nonfinite`` (NaN or +inf logits where the pair
    is read; its scores are then NaN, and the probe warns once).

    Args:
        pairs: a :class:`~probes.specs.ProbeSet`, or pairs / ``(name, context, keyword[, group])``
            tuples to build one.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable
            ``str -> list[int]``, or None when pairs are given as token ids.
        name: namespace of this probe's metrics and its ``state_key``; give two instances
            different names.
        every_n_steps: read every this many optimizer steps (plus the final reading).
        model: attribute path of the language model inside the LightningModule (e.g. ``"model"``);
            None uses the LightningModule itself.
        logits_fn: ``(module, input_ids, attention_mask) -> logits`` for models whose forward
            does not fit; may return anything :func:`~probes.adapters.extract_logits` accepts.
        separator: inserted between context and keyword when ``pairs`` is not a ProbeSet.
        bos_id: token id prepended to every context (e.g. a BOS token), or None.
        vocab_size, max_positions: override what is inferred from the model's config.
        truncation: ``"error"`` for contexts too long for the model, or ``"left"`` to drop
            leading context tokens with a warning.
        token_budget: maximum padded tokens per forward micro-batch.
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

    def __init__(
        self,
        pairs: Union[ProbeSet, Iterable[Union[ProbePair, Sequence[Any]]]],
        tokenizer: Any = None,
        *,
        name: str = "keyword",
        every_n_steps: int = 1,
        model: Optional[str] = None,
        logits_fn: Optional[LogitsFn] = None,
        separator: str = " ",
        bos_id: Optional[int] = None,
        vocab_size: Optional[int] = None,
        max_positions: Optional[int] = None,
        truncation: Literal["error", "left"] = "error",
        token_budget: int = 16384,
        log_scalars: bool = True,
        threshold: float = 1e-3,
        log_items: bool | int = False,
    ) -> None:
        super().__init__(name, every_n_steps)
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(f"Expected `threshold` in (0, 1), got {threshold!r}.")
        self.probe_set = pairs if isinstance(pairs, ProbeSet) else ProbeSet(pairs, separator=separator)
        self.items = tokenize_pairs(self.probe_set, as_encoder(tokenizer), bos_id=bos_id)
        self.reader = ModelReader(
            self.items,
            model=model,
            logits_fn=logits_fn,
            vocab_size=vocab_size,
            max_positions=max_positions,
            truncation=truncation,
            token_budget=token_budget,
        )
        self.log_scalars = log_scalars
        self.threshold = float(threshold)
        self._item_cap = self.items_to_log(log_items)
        self.nonfinite = NonFiniteMonitor(self.state_key, self.probe_set.names)

    @override
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
            "every_n_steps": self.every_n_steps,
            "threshold": self.threshold,
        }

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        rank, world = self.probe_shard(trainer)
        self.reader.bind(pl_module, rank=rank, world_size=world)  # validates every pair before training

    def read(self, module: nn.Module) -> ItemScores:
        """Score every pair against ``module`` now (no Trainer needed)."""
        return self.reader.read(module)

    def take_reading(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, log: bool) -> None:
        step = trainer.global_step
        scores = self.reader.read(pl_module, gather=self.gather_fn(trainer))
        self.mark_read(step)
        self.emit(
            step,
            {
                "p_first": scores.p_first,
                "logp_first": scores.logp_first,
                "logp_seq": scores.logp_seq,
                "rank": scores.rank,
                "nonfinite": scores.nonfinite,
            },
            epoch=self.reading_epoch(trainer),
        )
        self.nonfinite.observe(step, scores.nonfinite)
        if log and self.log_scalars and trainer.loggers:
            prefix = f"probes/{self.source}"
            pl_module.log(
                f"{prefix}/mean_log10_p_first",
                scores.logp_first.mean() / math.log(10),
                on_step=True,
                on_epoch=False,
                batch_size=1,
            )
            pl_module.log(f"{prefix}/mean_logp_seq", scores.logp_seq.mean(), on_step=True, on_epoch=False, batch_size=1)
            self.log_items(pl_module, "p_first", self.probe_set.names, scores.p_first, self._item_cap)
            log10_p_seq = scores.logp_seq / math.log(10)
            self.log_items(pl_module, "log10_p_seq", self.probe_set.names, log10_p_seq, self._item_cap)
            pl_module.log(
                f"{prefix}/frac_below_threshold",
                (scores.p_first < self.threshold).float().mean(),
                on_step=True,
                on_epoch=False,
                batch_size=1,
            )

    @override
    def scheduled_reading(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, final: bool) -> None:
        self.take_reading(trainer, pl_module, log=not final)
        if final:
            self.nonfinite.flush()
