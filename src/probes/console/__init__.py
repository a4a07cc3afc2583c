"""Rich renderables for probe records: the :class:`Dashboard`, its panels, and replay helpers.

No Lightning import here: the same dashboard serves the ``LiveConsole`` callback, ``probes replay``
and ``probes watch``. Each probe type's panel is declared by its kind (``probes.core.kinds``) in its
own package; the panel classes of the built-in kinds are exported here too, loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probes._lazy import lazy_getattr
from probes.console.dashboard import Dashboard
from probes.console.display import LiveDisplay
from probes.console.panels import Alert, AlertsPanel, RunHeader
from probes.console.replay import by_step, follow, replay
from probes.console.sparkline import ShareBar, Sparkline, bar_text, sparkline_text

if TYPE_CHECKING:
    from probes.choice.view import BenchmarkPanel
    from probes.formats.view import FormatPanel
    from probes.ifd.view import IFDPanel
    from probes.keyword.view import KeywordPanel
    from probes.priming.view import PrimingPanel

# panels of the built-in kinds, defined in their packages (imported when first asked for)
_PANELS = {
    "BenchmarkPanel": "probes.choice.view",
    "FormatPanel": "probes.formats.view",
    "IFDPanel": "probes.ifd.view",
    "KeywordPanel": "probes.keyword.view",
    "PrimingPanel": "probes.priming.view",
}

__all__ = [
    "Alert",
    "AlertsPanel",
    "BenchmarkPanel",
    "Dashboard",
    "FormatPanel",
    "IFDPanel",
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


__getattr__ = lazy_getattr("probes.console", _PANELS, globals())
