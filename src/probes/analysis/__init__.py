"""Post-hoc analysis of probe results (scipy/numpy; no Lightning import)."""

from probes.analysis.priming import PrimingAnalysis, analyze_priming, balanced_accuracy, best_threshold

__all__ = ["PrimingAnalysis", "analyze_priming", "balanced_accuracy", "best_threshold"]
