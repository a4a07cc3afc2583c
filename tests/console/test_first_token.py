"""The dashboard's first-token path (``keyword_metric="p_first"``) on records where the first-token
probability and the chained one differ, so reading the wrong metric shows (the shared console
fixtures hold single-token keywords, where the two are equal)."""

from __future__ import annotations

import math

import torch

from probes.console import Dashboard, KeywordPanel
from probes.core.records import Record

from ._records import FakeClock, render

DESCRIBE = {
    "type": "KeywordProbe",
    "source": "keyword",
    "probe_set": {"pairs": [{"name": n, "context": "c", "keyword": "k k", "group": None} for n in ("a", "b")]},
}
# step -> (p_first, p_seq) per pair
FIRST = [[0.5, 0.2], [0.25, 0.6]]
SEQ = [[1e-3, 4e-2], [1e-2, 1e-2]]


def _dashboard(metric: str) -> Dashboard:
    d = Dashboard(clock=FakeClock(), keyword_metric=metric)
    d.register_source("keyword", DESCRIBE)
    for step in range(2):
        p_first = torch.tensor(FIRST[step], dtype=torch.float64)
        seq = torch.tensor(SEQ[step], dtype=torch.float64)
        d.write(Record(step, "keyword", {"p_first": p_first, "logp_first": p_first.log(), "logp_seq": seq.log(),
                                         "rank": torch.tensor([1, 2])}))
    return d


def _rows(metric: str) -> list[list[str]]:
    lines = render(KeywordPanel(_dashboard(metric).states["keyword"], top_n=4), 80).splitlines()
    return [line.strip("│ ").split()[:4] for line in lines[2:-1]]


def test_chained_panel_reads_logp_seq() -> None:
    # a: 1e-3 -> 1e-2 (x10); b: 0.04 -> 0.01 (x0.25); |log 10| > |log 0.25|, so a first
    assert _rows("p_seq") == [["a", "0.0100", "1.0e-03", "×10"], ["b", "0.0100", "0.0400", "×0.25"]]


def test_first_token_panel_reads_p_first() -> None:
    # a: 0.5 -> 0.25 (x0.5); b: 0.2 -> 0.6 (x3); b moved more
    assert _rows("p_first") == [["b", "0.600", "0.200", "×3"], ["a", "0.250", "0.500", "×0.5"]]


def test_summary_line_names_the_metric_it_reads() -> None:
    line = _dashboard("p_first").summary_line()
    mean = (math.log10(0.25) + math.log10(0.6)) / 2  # -0.41
    assert f"keyword: top b ×3 (p_first 0.600), mean log10 p_first {mean:.2f}" in line
    line = _dashboard("p_seq").summary_line()
    assert "keyword: top a ×10 (p_seq 0.0100), mean log10 p_seq -2.00" in line
