"""Lightning callbacks: thin glue between Trainer hooks, the engine and record sinks."""

from probes.callbacks.base import ProbeCallback
from probes.callbacks.keyword_probe import KeywordProbe
from probes.model_reader import ModelReader

__all__ = ["KeywordProbe", "ModelReader", "ProbeCallback"]
