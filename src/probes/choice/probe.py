"""BenchmarkProbe: accuracy, confidence and calibration on small multiple-choice benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import torch
from torch import nn

from probes.choice.calibration import (
    CONFIDENCE_MODES,
    choice_stats,
    grouped_expected_calibration_error,
    grouped_mean,
    label_mass,
    majority_rate,
)
from probes.choice.spec import Benchmark, BenchmarkSuite, as_suite, check_instruction
from probes.core.context import TrainingContext
from probes.core.model_io import as_encoder
from probes.core.nonfinite import NonFiniteMonitor
from probes.core.notify import rank_zero_warn
from probes.core.options import ScoringOptions
from probes.core.plan import ItemScores, TokenizedItem
from probes.core.probe import ScoringProbe
from probes.core.reader import Gather
from probes.core.schedule import ReadSchedule
from probes.keyword.spec import ProbePair, ProbeSet, TextOrIds, tokenize_pairs

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
        chance: ``[n_benchmarks]`` mean over questions of ``1 / n_options`` (uniform guess).
        majority: ``[n_benchmarks]`` share of questions whose correct label is the benchmark's
            most frequent correct label (always answering that label).
        acc_minus_chance, acc_minus_majority: ``[n_benchmarks]`` accuracy minus each baseline.
        label_mass: ``[n_benchmarks]`` mean over questions of the summed (unnormalised, chained)
            probability of the question's options: output-space conformity.
        q_label_mass: ``[n_questions]`` that sum per question.
        option_scores: ``[n_items]`` the score of every option (chained or per-token log-prob),
            every variant (the benchmark's own instruction first, then each ablation).
        ablation_accuracy, ablation_confidence, ablation_label_mass: ``[n_ablations, n_benchmarks]``
            the same statistics with each ablation's instruction (None without ablations).
        ablation_q_correct: ``[n_ablations, n_questions]`` bool (None without ablations).
    """

    accuracy: torch.Tensor
    confidence: torch.Tensor
    ece: torch.Tensor
    q_pred: torch.Tensor
    q_correct: torch.Tensor
    q_p_chosen: torch.Tensor
    q_p_correct: torch.Tensor
    chance: torch.Tensor
    majority: torch.Tensor
    acc_minus_chance: torch.Tensor
    acc_minus_majority: torch.Tensor
    label_mass: torch.Tensor
    q_label_mass: torch.Tensor
    option_scores: torch.Tensor
    ablation_accuracy: Optional[torch.Tensor] = None
    ablation_confidence: Optional[torch.Tensor] = None
    ablation_label_mass: Optional[torch.Tensor] = None
    ablation_q_correct: Optional[torch.Tensor] = None
    q_nonfinite: Optional[torch.Tensor] = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The record tensors (everything except ``option_scores``; ablation tensors only when
        the probe has ablations)."""
        out = {
            "accuracy": self.accuracy,
            "confidence": self.confidence,
            "ece": self.ece,
            "q_pred": self.q_pred,
            "q_correct": self.q_correct,
            "q_p_chosen": self.q_p_chosen,
            "q_p_correct": self.q_p_correct,
            "chance": self.chance,
            "majority": self.majority,
            "acc_minus_chance": self.acc_minus_chance,
            "acc_minus_majority": self.acc_minus_majority,
            "label_mass": self.label_mass,
            "q_label_mass": self.q_label_mass,
        }
        if self.q_nonfinite is not None:
            out["q_nonfinite"] = self.q_nonfinite
        if self.ablation_accuracy is not None:
            out["ablation_accuracy"] = self.ablation_accuracy
            out["ablation_confidence"] = self.ablation_confidence  # type: ignore[assignment]
            out["ablation_label_mass"] = self.ablation_label_mass  # type: ignore[assignment]
            out["ablation_q_correct"] = self.ablation_q_correct  # type: ignore[assignment]
        return out


AblationSpec = Union[str, Sequence[int], Mapping[str, Union[str, Sequence[int]]]]


def _check_ablations(
    ablations: Optional[Mapping[str, AblationSpec]], suite: BenchmarkSuite
) -> dict[str, list[TextOrIds]]:
    """name -> one instruction per benchmark (suite order), validated."""
    if ablations is None:
        return {}
    if not isinstance(ablations, Mapping):
        raise ValueError(
            f"Expected `ablations` to be a mapping from a variant name to an instruction, e.g."
            f" {{'empty': '', 'misleading': 'Name the colour.\\n'}}, got {type(ablations).__name__} {ablations!r}."
        )
    out: dict[str, list[TextOrIds]] = {}
    for variant, spec in ablations.items():
        if not isinstance(variant, str) or not variant.strip():
            raise ValueError(f"Expected every ablation name to be a non-empty string, got {variant!r}.")
        per_bench: list[TextOrIds] = []
        if isinstance(spec, Mapping):
            missing = [b.name for b in suite if b.name not in spec]
            extra = sorted(set(spec) - set(suite.names))
            if missing or extra:
                raise ValueError(
                    f"Ablation {variant!r}: expected one instruction per benchmark; missing {missing}, unknown"
                    f" {extra}. Give a mapping with every benchmark name, or one instruction for all."
                )
            for b in suite:
                per_bench.append(
                    check_instruction(spec[b.name], text=b.is_text, where=f"Ablation {variant!r}, benchmark {b.name!r}")
                )
        else:
            for b in suite:
                per_bench.append(
                    check_instruction(spec, text=b.is_text, where=f"Ablation {variant!r}, benchmark {b.name!r}")
                )
        out[variant] = per_bench
    return out


def _tokenize_suite(
    suite: BenchmarkSuite,
    encode: Any,
    bos_id: Optional[int],
    instructions: Optional[Sequence[TextOrIds]] = None,
    tag: str = "",
) -> tuple[list[TokenizedItem], list[int], list[int]]:
    """Items (one per option, suite order), and each item's question index and option index.

    ``instructions``: one per benchmark replacing the benchmark's own (None: keep them).
    """
    items: list[TokenizedItem] = []
    item_q: list[int] = []
    item_k: list[int] = []
    q = 0
    for b_index, bench in enumerate(suite):
        pairs: list[ProbePair] = []
        where: list[tuple[int, int]] = []
        instruction = None if instructions is None else instructions[b_index]
        for question in bench.questions:
            context, continuations = bench.render(question, instruction)
            for k, cont in enumerate(continuations):
                pairs.append(ProbePair(f"{bench.name}/{question.name}/{k}{tag}", context, cont, group=bench.category))
                where.append((q, k))
            q += 1
        try:
            tokenized = tokenize_pairs(ProbeSet(pairs, separator=bench.separator), encode, bos_id=bos_id)
        except ValueError as err:
            where_ = f"Benchmark {bench.name!r}" + (f" (ablation {tag[1:]!r})" if tag else "")
            raise ValueError(f"{where_}: {err}") from None
        items.extend(tokenized)
        item_q.extend(w[0] for w in where)
        item_k.extend(w[1] for w in where)
    return items, item_q, item_k


class BenchmarkProbe(ScoringProbe):
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
      equal-width bins (see :mod:`probes.choice.calibration`).

    Output space (Kung & Peng 2023, arXiv 2305.11383), per benchmark: ``chance`` (mean over
    questions of ``1 / n_options``: a uniform guess over the label set), ``majority`` (share of
    questions whose correct label, the rendered correct continuation, is the benchmark's most
    frequent one: the best accuracy of a predictor that ignores the question), ``acc_minus_chance``,
    ``acc_minus_majority``, and ``label_mass``: the mean over questions of the summed unnormalised
    probability of the question's options (chained, whatever ``length_norm`` is), i.e. how much of
    the output distribution lies on the answer set at all.

    Per question (``[n_questions]``, suite order): ``q_pred`` (int64), ``q_correct`` (bool),
    ``q_p_chosen``, ``q_p_correct``, ``q_label_mass``. Plus ``end_of_stage`` (0-d bool): True for
    the reading taken when ``fit`` ends. Readings follow :class:`~probes.callbacks.KeywordProbe`'s
    step semantics.

    Instruction ablation: with ``ablations={"empty": "", "misleading": "Name the colour.\\n"}``
    every question is also scored with its benchmark's instruction replaced by each variant's (the
    context is ``instruction + prompt``, exactly as written), in the same batched pass, giving
    ``ablation_accuracy``, ``ablation_confidence``, ``ablation_label_mass``
    (``[n_ablations, n_benchmarks]``) and ``ablation_q_correct`` (``[n_ablations, n_questions]``),
    variants in ``describe()["ablations"]`` order. A variant is one instruction for every
    benchmark, or a mapping from every benchmark name to its instruction.

    Use one probe per training stage (``name="bench_pt", stage="pretrain"`` for pretraining,
    ``name="bench_sft", stage="sft"`` for SFT): the stage is part of :meth:`describe`, and
    :mod:`probes.choice.stages` compares the end-of-stage readings across stages and runs.

    Args:
        benchmarks: a :class:`~probes.choice.spec.BenchmarkSuite`, one
            :class:`~probes.choice.spec.Benchmark`, or an iterable of them.
        tokenizer: a Hugging Face tokenizer, a ``tokenizers.Tokenizer``, a callable
            ``str -> list[int]``, or None for token-id benchmarks.
        name: metric namespace and ``state_key`` suffix.
        stage: label of the training stage this probe watches (e.g. ``"pretrain"``, ``"sft"``).
        every_n_steps: read every this many optimizer steps, or a
            :class:`~probes.core.schedule.ReadSchedule` (plus the reading at the end of fit).
        confidence: ``"chosen"`` (default) or ``"correct"``; see above.
        length_norm: ``"none"`` (chained log-probability, default) or ``"token"`` (mean
            log-probability per option token).
        n_bins: equal-width bins of the expected calibration error (default 10).
        scoring: the :class:`~probes.core.options.ScoringOptions`; each option may also be passed as
            a keyword argument (``model="model"``), as for :class:`~probes.keyword.probe.KeywordProbe`.
        log_scalars: also log the mean accuracy, confidence and ECE over benchmarks through the
            Trainer's loggers.
        ablations: variant name -> instruction (text, or token ids for token-id benchmarks; ``""``
            for none) replacing every benchmark's instruction, or a mapping from each benchmark
            name to its instruction; see above. None (default): no ablation.

    Raises:
        ValueError: invalid benchmarks or arguments; a question that does not tokenize; an
            ablation that is not a mapping of names to instructions, or that misses a benchmark.

    Example::

        bench = Benchmark("colours", [("the colour of sand is", ["yellow", "blue"], 0)], category="colour")
        probe = BenchmarkProbe([bench], tokenizer, name="bench_pt", stage="pretrain", model="model")
        Trainer(callbacks=[probe]).fit(module, loader)
    """

    kind = "BenchmarkProbe"

    def __init__(
        self,
        benchmarks: Union[BenchmarkSuite, Benchmark, Iterable[Benchmark]],
        tokenizer: Any = None,
        *,
        name: str = "benchmark",
        stage: str = "",
        every_n_steps: Union[int, ReadSchedule] = 50,
        confidence: Literal["chosen", "correct"] = "chosen",
        length_norm: Literal["none", "token"] = "none",
        n_bins: int = 10,
        log_scalars: bool = True,
        ablations: Optional[Mapping[str, AblationSpec]] = None,
        scoring: Optional[ScoringOptions] = None,
        **scoring_options: Any,
    ) -> None:
        super().__init__(name, every_n_steps, ScoringOptions.merged(scoring, scoring_options, owner="BenchmarkProbe"))
        bos_id = self.scoring.bos_id
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
        self.ablations = _check_ablations(ablations, self.suite)
        encode = as_encoder(tokenizer)
        self.items, item_q, item_k = _tokenize_suite(self.suite, encode, bos_id)
        self.n_base_items = len(self.items)
        item_v = [0] * len(self.items)
        for v, (variant, instructions) in enumerate(self.ablations.items(), start=1):
            more, more_q, more_k = _tokenize_suite(self.suite, encode, bos_id, instructions, tag=f"@{variant}")
            self.items += more
            item_q += more_q
            item_k += more_k
            item_v += [v] * len(more)
        self.n_variants = 1 + len(self.ablations)
        self.nonfinite = NonFiniteMonitor(
            self.state_key, [f"{b.name}/{question.name}" for b in self.suite for question in b.questions]
        )
        self.requests = self.items
        questions = [q for b in self.suite for q in b.questions]
        self.n_questions = len(questions)
        self.max_options = max(q.n_options for q in questions)
        n_cells = self.n_questions * self.max_options
        self._item_cell = torch.tensor(
            [v * n_cells + q * self.max_options + k for v, q, k in zip(item_v, item_q, item_k)], dtype=torch.long
        )
        valid = torch.zeros(self.n_variants * n_cells, dtype=torch.bool)
        valid[self._item_cell] = True
        self._valid = valid.view(self.n_variants * self.n_questions, self.max_options)
        self._answer = torch.tensor([q.answer for q in questions], dtype=torch.long).repeat(self.n_variants)
        n_bench = len(self.suite)
        q_bench = [i for i, b in enumerate(self.suite) for _ in b.questions]
        self._q_bench = torch.tensor(q_bench, dtype=torch.long)
        # group of every (variant, question) row: variant * n_benchmarks + benchmark
        self._vq_group = torch.tensor(
            [v * n_bench + b for v in range(self.n_variants) for b in q_bench], dtype=torch.long
        )
        # baselines: constant for a probe, computed once on the host
        labels = [
            (i, b.render(q)[1][q.answer]) for i, b in enumerate(self.suite) for q in b.questions
        ]  # each question's correct label (the rendered correct continuation)
        self.chance = [sum(1.0 / q.n_options for q in b.questions) / len(b) for b in self.suite]
        self.majority = [majority_rate([lab for j, lab in labels if j == i]) for i in range(n_bench)]
        self._baselines = torch.tensor([self.chance, self.majority], dtype=torch.float64)
        self._device_cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._warn_prefix_options(item_q[: self.n_base_items], item_k[: self.n_base_items])

    def _warn_prefix_options(self, item_q: Sequence[int], item_k: Sequence[int]) -> None:
        """Warn when an option's scored tokens are a prefix of another's in one question: its
        probability then includes the other's, and ``label_mass`` counts that mass twice."""
        by_q: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        for item, q, k in zip(self.items[: self.n_base_items], item_q, item_k):
            by_q.setdefault(q, []).append((k, item.target))
        clashes = []
        for q, opts in by_q.items():
            for k1, t1 in opts:
                for k2, t2 in opts:
                    if k1 != k2 and len(t1) < len(t2) and t2[: len(t1)] == t1:
                        clashes.append((q, k1, k2))
        if clashes:
            q, k1, k2 = clashes[0]
            names = [f"{b.name}/{qq.name}" for b in self.suite for qq in b.questions]
            rank_zero_warn(
                f"{self.source}: in {len(clashes)} case(s) an option's tokens are a prefix of another option's"
                f" tokens in the same question (first: {names[q]!r}, option {k1} is a prefix of option {k2}); the"
                " shorter option's probability includes the longer one's, so label_mass counts that mass twice."
            )

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
                    "instruction": b.instruction if isinstance(b.instruction, str) else list(b.instruction),
                    "n_questions": len(b),
                }
                for b in self.suite
            ],
            "questions": [{"benchmark": b.name, **q.to_json()} for b in self.suite for q in b.questions],
            "confidence": self.confidence,
            "length_norm": self.length_norm,
            "n_bins": self.n_bins,
            **self.schedule.describe(),
            "ablations": [
                {
                    "name": variant,
                    "instructions": {
                        b.name: inst if isinstance(inst, str) else list(inst) for b, inst in zip(self.suite, insts)
                    },
                }
                for variant, insts in self.ablations.items()
            ],
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
                "chance": "[n_benchmarks] mean over questions of 1/n_options (uniform guess over the label set)",
                "majority": "[n_benchmarks] share of questions whose correct label is the most frequent correct label",
                "acc_minus_chance": "[n_benchmarks] accuracy - chance",
                "acc_minus_majority": "[n_benchmarks] accuracy - majority",
                "label_mass": "[n_benchmarks] mean over questions of the summed unnormalised probability of the"
                " options (chained)",
                "q_label_mass": "[n_questions] summed unnormalised probability of the question's options",
                "q_nonfinite": "[n_questions] the model's logits were NaN or +inf on an option (counted as wrong)",
                **(
                    {
                        "ablation_accuracy": "[n_ablations, n_benchmarks] accuracy with each ablation's instruction",
                        "ablation_confidence": "[n_ablations, n_benchmarks] confidence with each ablation's"
                        " instruction",
                        "ablation_label_mass": "[n_ablations, n_benchmarks] label mass with each ablation's"
                        " instruction",
                        "ablation_q_correct": "[n_ablations, n_questions] chosen option is correct, per ablation",
                    }
                    if self.ablations
                    else {}
                ),
                "option_score": "chained log-probability of the option's tokens given the question"
                if self.length_norm == "none"
                else "mean log-probability per option token given the question",
            },
        }

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        cached = self._device_cache.get(device)
        if cached is None:
            cached = tuple(
                t.to(device)
                for t in (self._item_cell, self._valid, self._answer, self._q_bench, self._vq_group, self._baselines)
            )
            self._device_cache[device] = cached
        return cached

    def read(self, module: nn.Module, *, gather: Optional[Gather] = None) -> BenchmarkReading:  # type: ignore[override]
        """Score every benchmark against ``module`` now (no Trainer needed); device tensors.

        ``gather`` is only needed when the reader is sharded across ranks (set up by a Trainer).
        """
        return self.reading_of(super().read(module, gather=gather))

    def reading_of(self, scores: ItemScores) -> BenchmarkReading:
        """The benchmark reading of the scores of :attr:`requests`."""
        device = scores.logp_seq.device
        cell, valid, answer, q_bench, vq_group, baselines = self._on(device)
        option_scores = scores.logp_seq
        if self.length_norm == "token":
            option_scores = option_scores / scores.n_tokens.to(option_scores.dtype)
        n_rows = self.n_variants * self.n_questions
        padded = torch.full((n_rows * self.max_options,), float("-inf"), device=device)
        padded[cell] = option_scores.float()
        stats = choice_stats(padded.view(n_rows, self.max_options), valid, answer)
        logp = torch.full((n_rows * self.max_options,), float("-inf"), dtype=torch.float64, device=device)
        logp[cell] = scores.logp_seq.double()
        mass = label_mass(logp.view(n_rows, self.max_options), valid)  # [V * Q] float64
        broken = torch.zeros(n_rows * self.max_options, dtype=torch.bool, device=device)
        broken[cell] = scores.nonfinite
        q_broken = broken.view(n_rows, self.max_options).any(dim=1)  # non-finite logits on an option
        correct = stats.correct & ~q_broken  # a question the model cannot be read on is not answered correctly
        n_bench = len(self.suite)
        n_groups = self.n_variants * n_bench
        acc_all = grouped_mean(correct, vq_group, n_groups).view(self.n_variants, n_bench)
        conf_all = grouped_mean(stats.confidence(self.confidence), vq_group, n_groups).view(self.n_variants, n_bench)
        mass_all = grouped_mean(mass, vq_group, n_groups).view(self.n_variants, n_bench)
        q = self.n_questions
        chance, majority = baselines[0], baselines[1]
        accuracy = acc_all[0]
        ablated = self.n_variants > 1
        return BenchmarkReading(
            accuracy=accuracy.float(),
            confidence=conf_all[0].float(),
            ece=grouped_expected_calibration_error(
                stats.p_chosen[:q], correct[:q], q_bench, n_bench, n_bins=self.n_bins, validate=False
            ).float(),
            q_pred=stats.pred[:q],
            q_correct=correct[:q],
            q_p_chosen=stats.p_chosen[:q],
            q_p_correct=stats.p_correct[:q],
            chance=chance.float(),
            majority=majority.float(),
            acc_minus_chance=(accuracy - chance).float(),
            acc_minus_majority=(accuracy - majority).float(),
            label_mass=mass_all[0],  # float64: chained probabilities can underflow float32
            q_label_mass=mass[:q],
            option_scores=option_scores,
            ablation_accuracy=acc_all[1:].float() if ablated else None,
            ablation_confidence=conf_all[1:].float() if ablated else None,
            ablation_label_mass=mass_all[1:] if ablated else None,
            ablation_q_correct=correct[q:].view(self.n_variants - 1, q) if ablated else None,
            q_nonfinite=q_broken[:q],
        )

    def take_reading(self, ctx: TrainingContext) -> None:
        step, end = ctx.step, ctx.final
        reading = self.reading_of(self.read_scores(ctx))
        self.schedule.mark(step)
        device = reading.accuracy.device
        self.emit(
            step,
            {**reading.tensors(), "end_of_stage": torch.tensor(end, device=device)},
            epoch=ctx.epoch,
        )
        if reading.q_nonfinite is not None:
            self.nonfinite.observe(step, reading.q_nonfinite)
            if end:
                self.nonfinite.flush()
        if not end and self.log_scalars and ctx.log is not None:
            prefix = f"probes/{self.source}"
            for key in ("accuracy", "confidence", "ece"):
                ctx.log(f"{prefix}/mean_{key}", getattr(reading, key).mean())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved_stage = state_dict.get("stage", self.stage)
        if saved_stage != self.stage:
            rank_zero_warn(
                f"{self.state_key}: the checkpoint was taken in stage {saved_stage!r} but this probe watches"
                f" stage {self.stage!r}; keeping {self.stage!r}."
            )
