"""Post-hoc analysis of probe results (scipy/numpy; no Lightning import)."""

from probes.analysis.correlation import Correlation, correlate
from probes.analysis.frequency import BinnedFrequency, FrequencyFit, binned_frequency, frequency_fit
from probes.analysis.priming import (
    CorrelationCI,
    PrimingAnalysis,
    analyze_priming,
    balanced_accuracy,
    best_threshold,
    correlation_ci,
    threshold_sweep,
)
from probes.analysis.stages import BenchmarkScores, TransferReport, load_run_scores, scores_from_probe, stage_transfer

__all__ = [
    "BenchmarkScores",
    "BinnedFrequency",
    "Correlation",
    "CorrelationCI",
    "FrequencyFit",
    "PrimingAnalysis",
    "TransferReport",
    "analyze_priming",
    "balanced_accuracy",
    "best_threshold",
    "binned_frequency",
    "correlate",
    "correlation_ci",
    "frequency_fit",
    "load_run_scores",
    "scores_from_probe",
    "stage_transfer",
    "threshold_sweep",
]
