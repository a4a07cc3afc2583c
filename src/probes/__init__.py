"""probes: watch, log, replay and test the training dynamics of language models in Lightning.

The public surface, by layer: specifications (what to probe), callbacks (when to read), sinks
(where records go), and post-hoc tools (``probes.runlog``, ``probes.analysis``,
``probes.testing``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probes._lazy import lazy_getattr

if TYPE_CHECKING:
    from probes.callbacks import (
        BenchmarkProbe,
        FormatProbe,
        FrequencyProbe,
        IFDProbe,
        IgnoreTopK,
        KeywordProbe,
        LayerUpdateProbe,
        LiveConsole,
        PrimingProbe,
        ProbeCallback,
        RefinementProbe,
        RunLog,
        ThoughtGainProbe,
    )
    from probes.choice.spec import Benchmark, BenchmarkSuite, Question
    from probes.console import Dashboard
    from probes.core.context import TrainingContext
    from probes.core.isolation import isolated_eval
    from probes.core.options import ScoringOptions
    from probes.core.plan import ItemScores, ScoringPlan, TokenizedItem
    from probes.core.reader import ModelReader
    from probes.core.records import Record, RecordSink
    from probes.core.schedule import ReadSchedule
    from probes.formats.collapse import CollapseCriterion, FormatCollapseError, FormatCollapseWarning
    from probes.formats.sampling import SamplerConfig
    from probes.formats.spec import ECHO_CHAMBER_MATH, ECHO_CHAMBER_MATH_STRICT, Format, FormatSpec, LabelSpace
    from probes.frontier.spec import RefinedSample
    from probes.ifd.probe import IFDSample
    from probes.integrations.loop import ProbeLoop
    from probes.keyword.spec import ProbePair, ProbeSet, tokenize_pairs
    from probes.priming.injection import InjectedLoader, InjectionSchedule
    from probes.priming.spec import LearningSample
    from probes.runlog import RunLogError, open_run
    from probes.thought.spec import ThoughtItem

__version__ = "0.1.0"

# Lazy exports (PEP 562): `import probes` stays light, so the `probes` command starts fast;
# a name's module is imported on first access.
_EXPORTS: dict[str, str] = {
    "Benchmark": "probes.choice.spec",
    "BenchmarkProbe": "probes.callbacks",
    "BenchmarkSuite": "probes.choice.spec",
    "CollapseCriterion": "probes.formats.collapse",
    "Dashboard": "probes.console",
    "ECHO_CHAMBER_MATH": "probes.formats.spec",
    "ECHO_CHAMBER_MATH_STRICT": "probes.formats.spec",
    "Format": "probes.formats.spec",
    "FormatCollapseError": "probes.formats.collapse",
    "FormatCollapseWarning": "probes.formats.collapse",
    "FormatProbe": "probes.callbacks",
    "FormatSpec": "probes.formats.spec",
    "FrequencyProbe": "probes.callbacks",
    "IFDProbe": "probes.callbacks",
    "IFDSample": "probes.ifd.probe",
    "IgnoreTopK": "probes.callbacks",
    "InjectedLoader": "probes.priming.injection",
    "InjectionSchedule": "probes.priming.injection",
    "ItemScores": "probes.core.plan",
    "KeywordProbe": "probes.callbacks",
    "LayerUpdateProbe": "probes.callbacks",
    "LabelSpace": "probes.formats.spec",
    "LearningSample": "probes.priming.spec",
    "LiveConsole": "probes.callbacks",
    "ModelReader": "probes.core.reader",
    "PrimingProbe": "probes.callbacks",
    "ProbeCallback": "probes.callbacks",
    "ProbeLoop": "probes.integrations.loop",
    "ProbePair": "probes.keyword.spec",
    "ProbeSet": "probes.keyword.spec",
    "Question": "probes.choice.spec",
    "ReadSchedule": "probes.core.schedule",
    "RefinedSample": "probes.frontier.spec",
    "RefinementProbe": "probes.callbacks",
    "Record": "probes.core.records",
    "RecordSink": "probes.core.records",
    "RunLog": "probes.callbacks",
    "RunLogError": "probes.runlog",
    "SamplerConfig": "probes.formats.sampling",
    "ScoringOptions": "probes.core.options",
    "ScoringPlan": "probes.core.plan",
    "TrainingContext": "probes.core.context",
    "ThoughtGainProbe": "probes.callbacks",
    "ThoughtItem": "probes.thought.spec",
    "TokenizedItem": "probes.core.plan",
    "isolated_eval": "probes.core.isolation",
    "open_run": "probes.runlog",
    "tokenize_pairs": "probes.keyword.spec",
}

__all__ = ["__version__", *sorted(_EXPORTS)]  # one table: the names above


__getattr__ = lazy_getattr("probes", _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
