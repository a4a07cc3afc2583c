"""BenchmarkProbe: accuracy, confidence and calibration on small multiple-choice benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from typing_extensions import override

from probes.adapters import LogitsFn, as_encoder
from probes.benchmarks_spec import Benchmark, BenchmarkSuite, as_suite
from probes.callbacks.base import ScheduledProbe
from probes.engine import TokenizedItem, tokenize_pairs
from probes.functional.calibration import (
    CONFIDENCE_MODES,
    choice_stats,
    grouped_expected_calibration_error,
    grouped_mean,
)
from probes.model_reader import Gather, ModelReader
from probes.specs import ProbePair, ProbeSet

__all__ = ["BenchmarkProbe", "BenchmarkReading"]

LENGTH_NORMS = ("none", "token")


@dataclass(frozen=True)
class BenchmarkReading:
    """One scoring pass over every benchmark (device tensors).

    Attributes:
        accuracy: ``[n_benchmarks]`` fraction of questions whose chosen option is correct.
        confidence: ``[n_benchmarks]`` mean confidence (chosen-option or correct-option
            probability, per the probe's ``confidence`` setting).
        ece: ``[n_benchmarks]`` expected calibration error of the chosen-option confidence.
        q_pred: ``[n_questions]`` chosen option index, suite order.
        q_correct: ``[n_questions]`` bool.
        q_p_chosen: ``[n_questions]`` normalised probability of the chosen option.
        q_p_correct: ``[n_questions]`` normalised probability of the correct option.
        option_scores: ``[n_items]`` the score of every option (chained or per-token log-prob).
    """

    accuracy: torch.Tensor
    confidence: torch.Tensor
    ece: torch.Tensor
    q_pred: torch.Tensor
    q_correct: torch.Tensor
    q_p_chosen: torch.Tensor
    q_p_correct: torch.Tensor
    option_scores: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        """The record tensors (everything except ``option_scores``)."""
        return {
            "accuracy": self.accuracy,
            "confidence": self.confidence,
            "ece": self.ece,
            "q_pred": self.q_pred,
            "q_correct": self.q_correct,
            "q_p_chosen": self.q_p_chosen,
            "q_p_correct": self.q_p_correct,
        }


def _tokenize_suite(
    suite: BenchmarkSuite, encode: Any, bos_id: Optional[int]
) -> tuple[list[TokenizedItem], list[int], list[int]]:
    """Items (one per option, suite order), and each item's question index and option index."""
    items: list[TokenizedItem] = []
    item_q: list[int] = []
    item_k: list[int] = []
    q = 0
    for bench in suite:
        pairs: list[ProbePair] = []
        where: list[tuple[int, int]] = []
        for question in bench.questions:
            context, continuations = bench.render(question)
            for k, cont in enumerate(continuations):
                pairs.append(ProbePair(f"{bench.name}/{question.name}/{k}", context, cont, group=bench.category))
                where.append((q, k))
            q += 1
        try:
            tokenized = tokenize_pairs(ProbeSet(pairs, separator=bench.separator), encode, bos_id=bos_id)
        except ValueError as err:
            raise ValueError(f"Benchmark {bench.name!r}: {err}") from None
        items.extend(tokenized)
        item_q.extend(w[0] for w in where)
        item_k.extend(w[1] for w in where)
    return items, item_q, item_k


class BenchmarkProbe(ScheduledProbe):
    """Scores small multiple-choice / cloze benchmarks every ``every_n_steps`` optimizer steps and
    when training ends, in one batched no-grad pass over every option of every question.

    Per question, every option is scored by its **chained log-probability** given the rendered
    question (``length_norm="token"`` divides by the option's token count instead, which removes
    the bias towards short options). The chosen option is the argmax (ties: earlier option);
    option probabilities are the softmax of the scores over the question's options.

    Per benchmark (tensors of shape ``[n_benchmarks]``, suite order):

    * ``accuracy``: fraction of questions whose chosen option is correct;
    * ``confidence``: mean over questions of the probability of the **chosen** option normalised
      over the options (``confidence="chosen"``, default), or of the **correct** option
      (``confidence="correct"``);
    * ``ece``: expected calibration error of the chosen-option confidence with ``n_bins``
      equal-width bins (see :mod:`probes.functional.calibration`).

    Per question (``[n_questions]``, suite order): ``q_pred`` (int64), ``q_correct`` (bool),
    ``q_p_chosen``, ``q_p_correct``. Plus ``end_of_stage`` (0-d bool): True for the reading taken
    when ``fit`` ends. Readings follow :class:`~probes.callbacks.KeywordProbe`'s step semantics.

    Use one probe per training stage (``name="bench_pt", stage="pretrain"`` for pretraining,
    ``name="bench_sft", stage="sft"`` for SFT): the stage is part of :meth:`describe`, and
    :mod:`probes.analysis.stages` compares the end-of-stage readings across stages and runs.

    Args:
        benchmarks: a :class:`~probes.benchmarks_spec.BenchmarkSuite`, one
            :class:`~probes.benchmarks_spec.Benchmark`, or an iterable of them.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable
            ``str -> list[int]``, or None for token-id benchmarks.
        name: metric namespace and ``state_key`` suffix.
        stage: label of the training stage this probe watches (e.g. ``"pretrain"``, ``"sft"``).
        every_n_steps: read every this many optimizer steps (plus the reading at the end of fit).
        confidence: ``"chosen"`` (default) or ``"correct"``; see above.
        length_norm: ``"none"`` (chained log-probability, default) or ``"token"`` (mean
            log-probability per option token).
        n_bins: equal-width bins of the expected calibration error (default 10).
        model: attribute path of the language model inside the LightningModule, or None.
        logits_fn: ``(module, input_ids, attention_mask) -> logits`` for unusual models.
        bos_id: token id prepended to every question (e.g. a BOS token), or None.
        vocab_size, max_positions, truncation, token_budget: see
            :class:`~probes.callbacks.KeywordProbe`.
        log_scalars: also log the mean accuracy, confidence and ECE over benchmarks through the
            Trainer's loggers.

    Raises:
        ValueError: invalid benchmarks or arguments; a question that does not tokenize.

    Example::

        bench = Benchmark("colours", [("the colour of sand is", ["yellow", "blue"], 0)], category="colour")
        probe = BenchmarkProbe([bench], tokenizer, name="bench_pt", stage="pretrain", model="model")
        Trainer(callbacks=[probe]).fit(module, loader)
    """

    def __init__(
        self,
        benchmarks: Union[BenchmarkSuite, Benchmark, Iterable[Benchmark]],
        tokenizer: Any = None,
        *,
        name: str = "benchmark",
        stage: str = "",
        every_n_steps: int = 50,
        confidence: Literal["chosen", "correct"] = "chosen",
        length_norm: Literal["none", "token"] = "none",
        n_bins: int = 10,
        model: Optional[str] = None,
        logits_fn: Optional[LogitsFn] = None,
        bos_id: Optional[int] = None,
        vocab_size: Optional[int] = None,
        max_positions: Optional[int] = None,
        truncation: Literal["error", "left"] = "error",
        token_budget: int = 16384,
        log_scalars: bool = True,
    ) -> None:
        super().__init__(name, every_n_steps)
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(
                f"Expected `confidence` to be 'chosen' (probability of the chosen option) or 'correct'"
                f" (probability of the correct option), got {confidence!r}."
            )
        if length_norm not in LENGTH_NORMS:
            raise ValueError(
                f"Expected `length_norm` to be 'none' (chained log-probability) or 'token' (per-token mean),"
                f" got {length_norm!r}."
            )
        if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
            raise ValueError(f"Expected `n_bins` to be a positive int, got {n_bins!r}. The usual choice is 10.")
        if not isinstance(stage, str):
            raise ValueError(f"Expected `stage` to be a string such as 'pretrain' or 'sft', got {stage!r}.")
        self.suite = as_suite(benchmarks)
        self.stage = stage
        self.confidence = confidence
        self.length_norm = length_norm
        self.n_bins = n_bins
        self.log_scalars = log_scalars
        self.items, item_q, item_k = _tokenize_suite(self.suite, as_encoder(tokenizer), bos_id)
        self.reader = ModelReader(
            self.items,
            model=model,
            logits_fn=logits_fn,
            vocab_size=vocab_size,
            max_positions=max_positions,
            truncation=truncation,
            token_budget=token_budget,
        )
        questions = [q for b in self.suite for q in b.questions]
        self.n_questions = len(questions)
        self.max_options = max(q.n_options for q in questions)
        self._item_cell = torch.tensor([q * self.max_options + k for q, k in zip(item_q, item_k)], dtype=torch.long)
        valid = torch.zeros(self.n_questions * self.max_options, dtype=torch.bool)
        valid[self._item_cell] = True
        self._valid = valid.view(self.n_questions, self.max_options)
        self._answer = torch.tensor([q.answer for q in questions], dtype=torch.long)
        self._q_bench = torch.tensor([i for i, b in enumerate(self.suite) for _ in b.questions], dtype=torch.long)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @override
    def describe(self) -> Mapping[str, Any]:
        return {
            **super().describe(),
            "stage": self.stage,
            "benchmarks": [
                {
                    "name": b.name,
                    "category": b.category,
                    "style": b.style,
                    "separator": b.separator,
                    "n_questions": len(b),
                }
                for b in self.suite
            ],
            "questions": [{"benchmark": b.name, **q.to_json()} for b in self.suite for q in b.questions],
            "confidence": self.confidence,
            "length_norm": self.length_norm,
            "n_bins": self.n_bins,
            "every_n_steps": self.every_n_steps,
            "metrics": {
                "accuracy": "[n_benchmarks] fraction of questions whose argmax option is correct",
                "confidence": (
                    "[n_benchmarks] mean probability of the chosen option, normalised over the options"
                    if self.confidence == "chosen"
                    else "[n_benchmarks] mean probability of the correct option, normalised over the options"
                ),
                "ece": f"[n_benchmarks] expected calibration error of the chosen-option probability, {self.n_bins}"
                " equal-width bins",
                "q_pred": "[n_questions] index of the chosen option",
                "q_correct": "[n_questions] chosen option is correct",
                "q_p_chosen": "[n_questions] normalised probability of the chosen option",
                "q_p_correct": "[n_questions] normalised probability of the correct option",
                "end_of_stage": "[] True for the reading taken when fit ends",
                "option_score": "chained log-probability of the option's tokens given the question"
                if self.length_norm == "none"
                else "mean log-probability per option token given the question",
            },
        }

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        rank, world = self.probe_shard(trainer)  # DDP: each rank scores its share of the items
        self.reader.bind(pl_module, rank=rank, world_size=world)  # validates every item before training

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        cached = self._device_cache.get(device)
        if cached is None:
            cached = tuple(t.to(device) for t in (self._item_cell, self._valid, self._answer, self._q_bench))
            self._device_cache[device] = cached
        return cached

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> BenchmarkReading:
        """Score every benchmark against ``module`` now (no Trainer needed); device tensors.

        ``gather`` is only needed when the reader is sharded across ranks (set up by a Trainer).
        """
        scores = self.reader.read(module, gather=gather)
        device = scores.logp_seq.device
        cell, valid, answer, q_bench = self._on(device)
        option_scores = scores.logp_seq
        if self.length_norm == "token":
            option_scores = option_scores / scores.n_tokens.to(option_scores.dtype)
        padded = torch.full((self.n_questions * self.max_options,), float("-inf"), device=device)
        padded[cell] = option_scores.float()
        stats = choice_stats(padded.view(self.n_questions, self.max_options), valid, answer)
        n_bench = len(self.suite)
        return BenchmarkReading(
            accuracy=grouped_mean(stats.correct, q_bench, n_bench).float(),
            confidence=grouped_mean(stats.confidence(self.confidence), q_bench, n_bench).float(),
            ece=grouped_expected_calibration_error(
                stats.p_chosen, stats.correct, q_bench, n_bench, n_bins=self.n_bins, validate=False
            ).float(),
            q_pred=stats.pred,
            q_correct=stats.correct,
            q_p_chosen=stats.p_chosen,
            q_p_correct=stats.p_correct,
            option_scores=option_scores,
        )

    def take_reading(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, end: bool) -> BenchmarkReading:
        step = trainer.global_step
        reading = self.read(pl_module, gather=self.gather_fn(trainer))
        self.mark_read(step)
        device = reading.accuracy.device
        self.emit(
            step,
            {**reading.tensors(), "end_of_stage": torch.tensor(end, device=device)},
            epoch=self.reading_epoch(trainer),
        )
        if not end and self.log_scalars and trainer.loggers:
            prefix = f"probes/{self.source}"
            for key in ("accuracy", "confidence", "ece"):
                value = getattr(reading, key).mean()
                pl_module.log(f"{prefix}/mean_{key}", value, on_step=True, on_epoch=False, batch_size=1)
        return reading

    @override
    def scheduled_reading(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, final: bool) -> None:
        self.take_reading(trainer, pl_module, end=final)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved_stage = state_dict.get("stage", self.stage)
        if saved_stage != self.stage:
            rank_zero_warn(
                f"{self.state_key}: the checkpoint was taken in stage {saved_stage!r} but this probe watches"
                f" stage {self.stage!r}; keeping {self.stage!r}."
            )
