"""Lightning callbacks: each probe with the Trainer hooks of :mod:`probes.integrations.lightning`,
and the Lightning sinks (run log, live console) and the IgnoreTopK remedy.

``KeywordProbe`` here is :class:`probes.keyword.probe.KeywordProbe` plus
:class:`~probes.integrations.lightning.ProbeCallback`; the same holds for every probe type, so a
probe built from this module also runs in a plain loop (:mod:`probes.integrations.loop`).
"""

from probes.callbacks.ignore_topk import IgnoreTopK
from probes.callbacks.live_console import LiveConsole
from probes.callbacks.run_log import RunLog
from probes.choice import probe as _choice
from probes.formats import probe as _formats
from probes.frequency import probe as _frequency
from probes.frontier import probe as _frontier
from probes.ifd import probe as _ifd
from probes.integrations.lightning import ProbeCallback, lightning_callback
from probes.keyword import probe as _keyword
from probes.priming import probe as _priming
from probes.thought import probe as _thought
from probes.updates import probe as _updates

BenchmarkProbe = lightning_callback(_choice.BenchmarkProbe, __name__)
FormatProbe = lightning_callback(_formats.FormatProbe, __name__)
FrequencyProbe = lightning_callback(_frequency.FrequencyProbe, __name__)
IFDProbe = lightning_callback(_ifd.IFDProbe, __name__)
KeywordProbe = lightning_callback(_keyword.KeywordProbe, __name__)
PrimingProbe = lightning_callback(_priming.PrimingProbe, __name__)
LayerUpdateProbe = lightning_callback(_updates.LayerUpdateProbe, __name__)
ThoughtGainProbe = lightning_callback(_thought.ThoughtGainProbe, __name__)
RefinementProbe = lightning_callback(_frontier.RefinementProbe, __name__)

__all__ = [
    "BenchmarkProbe",
    "FormatProbe",
    "FrequencyProbe",
    "IFDProbe",
    "IgnoreTopK",
    "KeywordProbe",
    "LayerUpdateProbe",
    "LiveConsole",
    "PrimingProbe",
    "ProbeCallback",
    "RefinementProbe",
    "RunLog",
    "ThoughtGainProbe",
]
