"""Rich renderables for probe records: the :class:`Dashboard`, its panels, and replay helpers.

No Lightning import here: the same dashboard serves the ``LiveConsole`` callback, ``probes replay``
and ``probes watch``.
"""

from probes.console.dashboard import Dashboard
from probes.console.display import LiveDisplay
from probes.console.panels import Alert, AlertsPanel, FormatPanel, KeywordPanel, PrimingPanel, RunHeader
from probes.console.replay import by_step, follow, replay
from probes.console.sparkline import ShareBar, Sparkline, bar_text, sparkline_text

__all__ = [
    "Alert",
    "AlertsPanel",
    "Dashboard",
    "FormatPanel",
    "KeywordPanel",
    "LiveDisplay",
    "PrimingPanel",
    "RunHeader",
    "ShareBar",
    "Sparkline",
    "bar_text",
    "by_step",
    "follow",
    "replay",
    "sparkline_text",
]
