"""probes: watch, log, replay and test the training dynamics of language models in Lightning."""

from probes.callbacks import KeywordProbe, ModelReader, ProbeCallback
from probes.engine import ItemScores, ScoringPlan, TokenizedItem, isolated_eval, tokenize_pairs
from probes.records import Record, RecordSink
from probes.specs import ProbePair, ProbeSet

__version__ = "0.1.0"

__all__ = [
    "ItemScores",
    "KeywordProbe",
    "ModelReader",
    "ProbeCallback",
    "ProbePair",
    "ProbeSet",
    "Record",
    "RecordSink",
    "ScoringPlan",
    "TokenizedItem",
    "__version__",
    "isolated_eval",
    "tokenize_pairs",
]
