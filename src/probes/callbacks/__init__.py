"""Lightning callbacks: thin glue between Trainer hooks, the engine and record sinks."""

from probes.callbacks.base import ProbeCallback
from probes.callbacks.benchmark_probe import BenchmarkProbe
from probes.callbacks.format_probe import FormatProbe
from probes.callbacks.ifd_probe import IFDProbe
from probes.callbacks.ignore_topk import IgnoreTopK
from probes.callbacks.keyword_probe import KeywordProbe
from probes.callbacks.live_console import LiveConsole
from probes.callbacks.priming_probe import PrimingProbe
from probes.callbacks.run_log import RunLog

__all__ = [
    "BenchmarkProbe",
    "FormatProbe",
    "IFDProbe",
    "IgnoreTopK",
    "KeywordProbe",
    "LiveConsole",
    "PrimingProbe",
    "ProbeCallback",
    "RunLog",
]
