"""probes: watch, log, replay and test the training dynamics of language models in Lightning.

The public surface, by layer: specifications (what to probe), callbacks (when to read), sinks
(where records go), and post-hoc tools (``probes.runlog``, ``probes.analysis``,
``probes.testing``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.benchmarks_spec import Benchmark, BenchmarkSuite, Question
    from probes.callbacks import (
        BenchmarkProbe,
        FormatProbe,
        IFDProbe,
        IgnoreTopK,
        KeywordProbe,
        LiveConsole,
        PrimingProbe,
        ProbeCallback,
        RunLog,
    )
    from probes.callbacks.ifd_probe import IFDSample
    from probes.collapse import CollapseCriterion, FormatCollapseError, FormatCollapseWarning
    from probes.console import Dashboard
    from probes.engine import ItemScores, ScoringPlan, TokenizedItem, isolated_eval, tokenize_pairs
    from probes.formats import ECHO_CHAMBER_MATH, ECHO_CHAMBER_MATH_STRICT, Format, FormatSpec, LabelSpace
    from probes.injection import InjectedLoader, InjectionSchedule
    from probes.learning import LearningSample
    from probes.model_reader import ModelReader
    from probes.records import Record, RecordSink
    from probes.runlog import RunLogError, open_run
    from probes.sampling import SamplerConfig
    from probes.specs import ProbePair, ProbeSet

__version__ = "0.1.0"

# Lazy exports (PEP 562): `import probes` stays light, so the `probes` command starts fast;
# a name's module is imported on first access.
_EXPORTS: dict[str, str] = {
    "Benchmark": "probes.benchmarks_spec",
    "BenchmarkProbe": "probes.callbacks",
    "BenchmarkSuite": "probes.benchmarks_spec",
    "CollapseCriterion": "probes.collapse",
    "Dashboard": "probes.console",
    "ECHO_CHAMBER_MATH": "probes.formats",
    "ECHO_CHAMBER_MATH_STRICT": "probes.formats",
    "Format": "probes.formats",
    "FormatCollapseError": "probes.collapse",
    "FormatCollapseWarning": "probes.collapse",
    "FormatProbe": "probes.callbacks",
    "FormatSpec": "probes.formats",
    "IFDProbe": "probes.callbacks",
    "IFDSample": "probes.callbacks.ifd_probe",
    "IgnoreTopK": "probes.callbacks",
    "InjectedLoader": "probes.injection",
    "InjectionSchedule": "probes.injection",
    "ItemScores": "probes.engine",
    "KeywordProbe": "probes.callbacks",
    "LabelSpace": "probes.formats",
    "LearningSample": "probes.learning",
    "LiveConsole": "probes.callbacks",
    "ModelReader": "probes.model_reader",
    "PrimingProbe": "probes.callbacks",
    "ProbeCallback": "probes.callbacks",
    "ProbePair": "probes.specs",
    "ProbeSet": "probes.specs",
    "Question": "probes.benchmarks_spec",
    "Record": "probes.records",
    "RecordSink": "probes.records",
    "RunLog": "probes.callbacks",
    "RunLogError": "probes.runlog",
    "SamplerConfig": "probes.sampling",
    "ScoringPlan": "probes.engine",
    "TokenizedItem": "probes.engine",
    "isolated_eval": "probes.engine",
    "open_run": "probes.runlog",
    "tokenize_pairs": "probes.engine",
}

__all__ = [
    "ECHO_CHAMBER_MATH",
    "ECHO_CHAMBER_MATH_STRICT",
    "Benchmark",
    "BenchmarkProbe",
    "BenchmarkSuite",
    "CollapseCriterion",
    "Dashboard",
    "Format",
    "FormatCollapseError",
    "FormatCollapseWarning",
    "FormatProbe",
    "FormatSpec",
    "IFDProbe",
    "IFDSample",
    "IgnoreTopK",
    "InjectedLoader",
    "InjectionSchedule",
    "ItemScores",
    "KeywordProbe",
    "LabelSpace",
    "LearningSample",
    "LiveConsole",
    "ModelReader",
    "PrimingProbe",
    "ProbeCallback",
    "ProbePair",
    "ProbeSet",
    "Question",
    "Record",
    "RecordSink",
    "RunLog",
    "RunLogError",
    "SamplerConfig",
    "ScoringPlan",
    "TokenizedItem",
    "__version__",
    "isolated_eval",
    "open_run",
    "tokenize_pairs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
