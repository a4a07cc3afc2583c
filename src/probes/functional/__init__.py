"""Pure math on tensors and arrays: no Lightning, rich or safetensors imports."""

from probes.choice.calibration import (
    choice_stats,
    expected_calibration_error,
    grouped_expected_calibration_error,
    reliability_bins,
)
from probes.core.scoring import checked_target_logprobs, target_logprobs, target_ranks
from probes.formats.entropy import (
    distribution_summary,
    effective_number,
    entropy,
    entropy_bits,
    kl_divergence,
    normalize,
    normalized_entropy,
)
from probes.priming.exposure import count_occurrences
from probes.priming.scores import PrimingScores, group_logmeanexp, priming_scores

__all__ = [
    "PrimingScores",
    "checked_target_logprobs",
    "choice_stats",
    "count_occurrences",
    "distribution_summary",
    "effective_number",
    "entropy",
    "entropy_bits",
    "expected_calibration_error",
    "group_logmeanexp",
    "grouped_expected_calibration_error",
    "kl_divergence",
    "normalize",
    "normalized_entropy",
    "priming_scores",
    "reliability_bins",
    "target_logprobs",
    "target_ranks",
]
