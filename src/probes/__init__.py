"""probes: watch, log, replay and test the training dynamics of language models in Lightning.

The public surface, by layer: specifications (what to probe), callbacks (when to read), sinks
(where records go), and post-hoc tools (``probes.runlog``, ``probes.analysis``,
``probes.testing``).
"""

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
