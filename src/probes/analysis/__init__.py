"""Post-hoc analysis of probe results (scipy/numpy; no Lightning import).

The shared statistics live here (:mod:`probes.analysis.correlation`, :mod:`probes.analysis.frequency`);
each probe package keeps its own analysis (``probes.priming.analysis``, ``probes.choice.stages``),
re-exported here by name, imported on first use (those modules import the shared statistics).
"""

from __future__ import annotations

from probes._lazy import lazy_getattr
from probes.analysis.correlation import Correlation, correlate
from probes.analysis.frequency import BinnedFrequency, FrequencyFit, binned_frequency, frequency_fit

_DOMAIN: dict[str, str] = {
    **dict.fromkeys(
        ["CorrelationCI", "PrimingAnalysis", "analyze_priming", "balanced_accuracy", "best_threshold",
         "correlation_ci", "threshold_sweep"],
        "probes.priming.analysis",
    ),
    **dict.fromkeys(
        ["BenchmarkScores", "TransferReport", "load_run_scores", "scores_from_probe", "stage_transfer"],
        "probes.choice.stages",
    ),
    **dict.fromkeys(["Attribution", "attribute", "attribution_from_run"], "probes.frequency.analysis"),
}

__all__ = [
    "Attribution",
    "BenchmarkScores",
    "BinnedFrequency",
    "Correlation",
    "CorrelationCI",
    "FrequencyFit",
    "PrimingAnalysis",
    "TransferReport",
    "analyze_priming",
    "attribute",
    "attribution_from_run",
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


__getattr__ = lazy_getattr("probes.analysis", _DOMAIN, globals())
