"""Multiple-choice predictions and their calibration: option probabilities, accuracy, confidence and
expected calibration error (ECE). Pure torch; everything stays on the input's device.

Definitions used throughout the library:

* **Option probability**: the softmax of the option scores over the options of one question
  (``p_k = exp(s_k) / sum_j exp(s_j)``). With the default scores (chained log-probabilities of
  each option given the question) this is P(option | question) renormalised over the options.
* **Chosen option**: the argmax of the scores; an exact tie goes to the earlier option.
* **Confidence** (default, ``"chosen"``): the probability of the chosen option. The alternative
  ``"correct"`` is the probability of the correct option.
* **ECE**: ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over ``n_bins`` equal-width bins of the
  chosen-option confidence; bin ``b`` (0-based) is ``(b / M, (b + 1) / M]`` and a confidence of
  exactly 0 falls in the first bin (Guo et al. 2017). ECE is always computed from the
  chosen-option confidence: calibration asks whether the model's stated certainty in its *own
  prediction* matches how often that prediction is right.
* **Output space** (Kung & Peng 2023, arXiv 2305.11383): the *label mass* of a question is the
  summed probability of all its options, ``sum_k P(option_k | question)`` with the unnormalised
  chained probabilities (how much of the model's output distribution lies on the answer set at
  all); the *chance* accuracy of a question is ``1 / n_options`` (a guess uniform over the label
  set: the paper's random baseline, which knows the output space and nothing else); the *majority*
  accuracy of a set of questions is the share of questions whose correct label is the most
  frequent correct label (the best accuracy of any predictor that ignores the question, knowing
  the label distribution).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "CONFIDENCE_MODES",
    "ChoiceStats",
    "ReliabilityBins",
    "bin_edges",
    "chance_accuracy",
    "choice_stats",
    "expected_calibration_error",
    "grouped_expected_calibration_error",
    "grouped_mean",
    "label_mass",
    "majority_rate",
    "option_probabilities",
    "reliability_bins",
]

ConfidenceMode = Literal["chosen", "correct"]
CONFIDENCE_MODES: tuple[str, ...] = ("chosen", "correct")


def _check_n_bins(n_bins: object) -> int:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"Expected `n_bins` to be a positive int, got {n_bins!r}. The usual choice is 10.")
    return n_bins


def bin_edges(n_bins: int = 10, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``n_bins + 1`` equal-width bin edges on [0, 1], float64."""
    return torch.linspace(0.0, 1.0, _check_n_bins(n_bins) + 1, dtype=torch.float64, device=device)


def _bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    # bucketize(right=False) gives i with edges[i-1] < x <= edges[i] over the inner edges, i.e. the
    # half-open-on-the-left bins (b/M, (b+1)/M]; x == 0 lands in bin 0.
    inner = bin_edges(n_bins, device=confidence.device)[1:-1]
    return torch.bucketize(confidence.double(), inner, right=False)


def _as_pair(confidence: object, correct: object) -> tuple[torch.Tensor, torch.Tensor]:
    conf = confidence if isinstance(confidence, torch.Tensor) else torch.as_tensor(confidence, dtype=torch.float64)
    corr = torch.as_tensor(correct, device=conf.device)
    if conf.dim() != 1 or corr.shape != conf.shape:
        raise ValueError(
            f"Expected `confidence` and `correct` to be 1-D and of the same length, got shapes"
            f" {list(conf.shape)} and {list(corr.shape)}."
        )
    if conf.numel() == 0:
        raise ValueError("Expected at least one prediction, got none: calibration of an empty set is undefined.")
    conf = conf.double()  # float64 statistics: bins and sums are exact enough to compare with a loop
    if not torch.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        bad = conf[~(torch.isfinite(conf) & (conf >= 0) & (conf <= 1))][0].item()
        raise ValueError(f"Expected every confidence in [0, 1], got {bad!r}; pass probabilities, not logits.")
    return conf, corr.to(torch.float64)


def expected_calibration_error(confidence: object, correct: object, *, n_bins: int = 10) -> torch.Tensor:
    """Expected calibration error with ``n_bins`` equal-width bins (see module docstring).

    Args:
        confidence: ``[n]`` probabilities of the predicted option, in [0, 1].
        correct: ``[n]`` bools (or 0/1): whether each prediction was right.
        n_bins: number of equal-width bins on [0, 1] (default 10).

    Returns:
        A float64 0-d tensor in [0, 1].

    Raises:
        ValueError: shapes that differ, no predictions, a confidence outside [0, 1], a bad
            ``n_bins``.

    Example::

        expected_calibration_error([0.9, 0.6], [True, False])  # (|1 - .9| + |0 - .6|) / 2 = 0.35
    """
    conf, corr = _as_pair(confidence, correct)
    group = torch.zeros(conf.shape, dtype=torch.long, device=conf.device)
    return grouped_expected_calibration_error(conf, corr, group, 1, n_bins=n_bins, validate=False)[0]


def grouped_expected_calibration_error(
    confidence: torch.Tensor,
    correct: torch.Tensor,
    group: torch.Tensor,
    n_groups: int,
    *,
    n_bins: int = 10,
    validate: bool = True,
) -> torch.Tensor:
    """ECE of each group (for example each benchmark) in one vectorised pass: ``[n_groups]`` float64.

    Args:
        confidence: ``[n]`` chosen-option probabilities in [0, 1].
        correct: ``[n]`` bools or 0/1.
        group: ``[n]`` int64 group index in ``[0, n_groups)``.
        n_groups: number of groups; a group with no member gets NaN.
        n_bins: equal-width bins on [0, 1].
        validate: check the inputs (costs a device sync; the probes skip it on their own outputs).
    """
    n_bins = _check_n_bins(n_bins)
    if validate:
        confidence, correct = _as_pair(confidence, correct)
        if group.shape != confidence.shape:
            raise ValueError(f"Expected `group` of shape {list(confidence.shape)}, got {list(group.shape)}.")
    conf = confidence.double()
    corr = correct.double()
    cell = group.long() * n_bins + _bin_index(conf, n_bins)  # [n]
    size = n_groups * n_bins
    count = torch.zeros(size, dtype=torch.float64, device=conf.device).index_add_(0, cell, torch.ones_like(conf))
    conf_sum = torch.zeros(size, dtype=torch.float64, device=conf.device).index_add_(0, cell, conf)
    corr_sum = torch.zeros(size, dtype=torch.float64, device=conf.device).index_add_(0, cell, corr)
    # |B| / n * |acc - conf| = |sum(correct) - sum(conf)| / n for every bin
    gap = (corr_sum - conf_sum).abs().view(n_groups, n_bins).sum(dim=1)
    n = count.view(n_groups, n_bins).sum(dim=1)
    return gap / n  # NaN for an empty group (0 / 0)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics behind a reliability diagram (host tensors, float64 except ``count``).

    Attributes:
        edges: ``[n_bins + 1]`` bin edges.
        count: ``[n_bins]`` predictions per bin (int64).
        confidence: ``[n_bins]`` mean confidence per bin (NaN where empty).
        accuracy: ``[n_bins]`` fraction correct per bin (NaN where empty).
    """

    edges: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor


def reliability_bins(confidence: object, correct: object, *, n_bins: int = 10) -> ReliabilityBins:
    """Count, mean confidence and accuracy per equal-width bin (the reliability diagram)."""
    conf, corr = _as_pair(confidence, correct)
    n_bins = _check_n_bins(n_bins)
    b = _bin_index(conf, n_bins)
    count = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, b, torch.ones_like(conf))
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, b, conf.double())
    corr_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, b, corr)
    return ReliabilityBins(
        edges=bin_edges(n_bins).cpu(),
        count=count.long().cpu(),
        confidence=(conf_sum / count).cpu(),
        accuracy=(corr_sum / count).cpu(),
    )


def option_probabilities(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax of ``scores [Q, K]`` over the valid options of each row; 0 where ``valid`` is False.

    Rows are questions padded to ``K`` options; ``valid [Q, K]`` marks real options.
    """
    masked = scores.float().masked_fill(~valid, float("-inf"))
    return torch.softmax(masked, dim=1).masked_fill(~valid, 0.0)


@dataclass(frozen=True)
class ChoiceStats:
    """Per-question outcome of multiple-choice scoring (device tensors of shape ``[Q]``).

    Attributes:
        pred: index of the chosen (highest-scoring) option; ties go to the earlier option.
        correct: whether ``pred`` is the correct option.
        p_chosen: normalised probability of the chosen option (the default confidence).
        p_correct: normalised probability of the correct option.
    """

    pred: torch.Tensor
    correct: torch.Tensor
    p_chosen: torch.Tensor
    p_correct: torch.Tensor

    def confidence(self, mode: ConfidenceMode = "chosen") -> torch.Tensor:
        """``p_chosen`` for ``"chosen"`` (default) or ``p_correct`` for ``"correct"``."""
        if mode == "chosen":
            return self.p_chosen
        if mode == "correct":
            return self.p_correct
        raise ValueError(f"Expected confidence mode 'chosen' or 'correct', got {mode!r}.")


def choice_stats(scores: torch.Tensor, valid: torch.Tensor, answer: torch.Tensor) -> ChoiceStats:
    """Prediction, correctness and option probabilities of every question.

    Args:
        scores: ``[Q, K]`` option scores (higher is better), padded.
        valid: ``[Q, K]`` bool, True for real options (at least one per row).
        answer: ``[Q]`` int64 index of the correct option.
    """
    masked = scores.float().masked_fill(~valid, float("-inf"))
    probs = option_probabilities(scores, valid)
    pred = masked.argmax(dim=1)  # first maximal index on ties
    return ChoiceStats(
        pred=pred,
        correct=pred == answer,
        p_chosen=probs.gather(1, pred.unsqueeze(1)).squeeze(1),
        p_correct=probs.gather(1, answer.long().unsqueeze(1)).squeeze(1),
    )


def grouped_mean(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of ``values [n]`` within each of ``n_groups`` groups, float64 ``[n_groups]`` (NaN if empty)."""
    v = values.double()
    total = torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, group.long(), v)
    count = torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, group.long(), torch.ones_like(v))
    return total / count


def label_mass(logp: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Probability mass on each question's options: ``[Q]`` float64 ``sum_k exp(logp[q, k])``
    over the valid options.

    Args:
        logp: ``[Q, K]`` natural-log probabilities of each option's tokens given the question
            (chained, *not* length-normalised, so the sum is a probability), padded.
        valid: ``[Q, K]`` bool, True for real options.

    The sum is a probability (at most 1) when no option's tokens are a prefix of another
    option's tokens in the same question; otherwise the shared prefix mass is counted twice.
    """
    masked = logp.double().masked_fill(~valid, float("-inf"))
    return torch.logsumexp(masked, dim=1).exp()


def chance_accuracy(valid: torch.Tensor) -> torch.Tensor:
    """``[Q]`` float64 ``1 / n_options`` of each question (the accuracy of a uniform guess over
    its options); ``valid`` is ``[Q, K]`` bool."""
    return 1.0 / valid.sum(dim=1).to(torch.float64)


def majority_rate(labels: Sequence[Hashable]) -> float:
    """Share of questions whose correct label is the most frequent correct label.

    ``labels`` holds each question's correct label (e.g. its answer text). This is the accuracy of
    always answering the most frequent label, and the best accuracy of any predictor that does
    not look at the question (whatever it knows about the label distribution).

    Raises:
        ValueError: no labels.

    Example::

        majority_rate(["pos", "neg", "pos", "pos"])  # 0.75
    """
    labels = list(labels)
    if not labels:
        raise ValueError("Expected at least one label, got none: the majority rate of no questions is undefined.")
    return max(Counter(labels).values()) / len(labels)
