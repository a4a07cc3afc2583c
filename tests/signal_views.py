"""A run-log round trip through every view a probe kind declares (shared by the signal probes' tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from probes.console import Dashboard
from probes.core import kinds
from probes.core.probe import Probe
from probes.runlog import RunWriter, open_run


def round_trip(probe: Probe, tmp_path: Path) -> dict[str, Any]:
    """Write ``probe.history`` to a run log and call every view of its kind; returns what they made."""
    kind = kinds.get(probe.kind_name())
    assert kind is not kinds.GENERIC
    describe = probe.describe()
    with RunWriter(tmp_path / "run") as writer:
        writer.register_source(probe.source, describe)
        for record in probe.history:
            writer.write(record)
    run = open_run(tmp_path / "run")
    section = kind.summarize(run, probe.source, run.describe(probe.source), 20)
    lines = kind.summary_lines(section)
    dashboard = Dashboard(clock=None)
    dashboard.register_source(probe.source, describe)
    for record in run.records():
        dashboard.write(record)
    import io

    console = Console(width=160, record=True, file=io.StringIO())
    console.print(dashboard)
    text = console.export_text()
    last = {k: np.asarray(v.detach().cpu()) for k, v in probe.history[-1].tensors.items()}
    replay = kind.replay(last, describe)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    kind.plot(ax, run, probe.source, 8)
    plt.close(fig)
    return {"section": section, "lines": lines, "dashboard": text, "status": dashboard.summary_line(),
            "replay": replay, "run": run}
