"""At 120 columns the format panel shows every format label (issue 20: one of six was hidden as
"+1 more formats"), in the spec's order, each label whole."""

from __future__ import annotations

import math

import torch

from probes.console import Dashboard
from probes.core.records import Record

from ._records import FakeClock, render

FORMATS = ["answer first", "step by step", "bullet list", "json object", "refusal", "code block"]
OTHER = "everything else"


def _dashboard() -> Dashboard:
    d = Dashboard(clock=FakeClock())
    d.register_source("format", {"type": "FormatProbe", "formats": FORMATS, "other": OTHER})
    share = torch.tensor([0.30, 0.22, 0.18, 0.12, 0.08, 0.06, 0.04], dtype=torch.float64)
    bits = float(-(share * share.log2()).sum())
    d.write(Record(0, "format", {
        "dist": share, "entropy_bits": torch.tensor(bits), "norm_entropy": torch.tensor(bits / math.log2(7)),
        "eff_formats": torch.tensor(2**bits), "dominant": torch.tensor(0), "dominant_share": torch.tensor(0.30),
        "unclassified": share[6], "n": torch.tensor(200), "collapsed": torch.tensor(False),
    }))
    return d


def test_every_format_label_is_visible_at_120_columns() -> None:
    text = render(_dashboard(), 120)
    assert "more formats" not in text, text
    rows = [line for line in text.splitlines() if any(f"│ {name} " in line for name in [*FORMATS, OTHER])]
    assert len(rows) == 7, text
    positions = [text.index(f"│ {name} ") for name in [*FORMATS, OTHER]]
    assert positions == sorted(positions)  # the spec's order, "other" last
