"""Long pair and sample names on an 80-column console: one line per row, names cut with an ellipsis.

Rich always crops a line to the console width, so a width check alone cannot fail; what a user
would notice is a name wrapping onto extra lines (rows no longer one per line) or cut without a
mark. These tests count the lines of each panel and look for the ellipsis.
"""

from __future__ import annotations

import math

import pytest
import torch

from probes.console import Dashboard, KeywordPanel, PrimingPanel
from probes.core.records import Record

from ._records import FakeClock, render

WIDTH = 80
# names with spaces (as real pair names have: "colour: the sky") would wrap at the spaces if let
PAIRS = [f"pair{i} " + "with a name far longer than the column " * 2 + f"end{i}" for i in range(3)]
SAMPLES = [f"sample{i} " + "another extremely long learning sample name " * 2 + f"end{i}" for i in range(2)]
P = [[1e-4, 0.5, 0.02], [1e-3, 0.25, 0.02], [1e-2, 0.1, 0.04]]


def _dashboard() -> Dashboard:
    d = Dashboard(clock=FakeClock())
    d.register_source(
        "keyword",
        {
            "type": "KeywordProbe",
            "probe_set": {"pairs": [{"name": n, "context": "c", "keyword": "k", "group": None} for n in PAIRS]},
        },
    )
    d.register_source("priming", {"type": "PrimingProbe", "samples": [{"name": n} for n in SAMPLES], "threshold": 1e-3})
    for step in range(3):
        p = torch.tensor(P[step], dtype=torch.float32)
        d.write(Record(step, "keyword", {"p_first": p, "logp_first": p.log(), "logp_seq": p.log(),
                                         "rank": torch.tensor([3, 1, 2])}))
        p_before = torch.tensor([1e-4, 0.05], dtype=torch.float64)
        p_learn = torch.tensor([1e-4 * 10**step, 0.05], dtype=torch.float64)
        s_prime = torch.tensor([2.0**step, 0.5], dtype=torch.float64)
        d.write(Record(step, "priming", {
            "p_learn": p_learn, "p_before": p_before, "s_mem": p_learn / p_before, "s_prime": s_prime,
            "log10_s_mem": (p_learn / p_before).log10(), "log10_s_prime": s_prime.log10(),
            "median_prime_ratio": s_prime, "delta_p_learn": p_learn - p_before,
            "delta_p_prime": torch.zeros(2, dtype=torch.float64), "exposures": torch.tensor([step, step]),
            "surprising": torch.tensor([True, False]), "has_baseline": torch.tensor([True, True]),
        }))
    return d


def _rows(lines: list[str], names: list[str]) -> dict[str, list[str]]:
    """For each name, the lines that show any part of it: its unique first word, or any later word
    (a wrapped name continues on the next lines)."""
    out = {}
    for n in names:
        first, rest = n.split(" ", 1)
        out[n] = [line for line in lines if f"│ {first} " in line or rest.split(" ")[-1] in line]
    return out


@pytest.mark.parametrize("panel", ["keyword", "priming"])
def test_each_row_is_one_line_with_an_ellipsis(panel: str) -> None:
    d = _dashboard()
    if panel == "keyword":
        renderable, names = KeywordPanel(d.states["keyword"], top_n=8), PAIRS
    else:
        renderable, names = PrimingPanel(d.states["priming"], max_rows=6, threshold=1e-3), SAMPLES
    lines = render(renderable, WIDTH).splitlines()
    assert len(lines) == 3 + len(names), "\n".join(lines)  # top border, header, one line per row, bottom
    assert all(len(line) == WIDTH for line in lines)
    for name, shown in _rows(lines, names).items():
        assert len(shown) == 1, f"{name!r} spans {len(shown)} lines:\n" + "\n".join(lines)
        row = shown[0]
        assert "…" in row and name not in row  # cut, and the cut is marked
        cell = row[2:].split("…")[0]
        assert name.startswith(cell) and len(cell) >= 6  # the beginning of the name is what stays
    # the numeric columns survive the cut: every row still ends in its trend sparkline
    assert all(line.rstrip(" │").endswith(("█", "▁")) for line in lines[2:-1])


def test_whole_dashboard_at_80_columns_keeps_one_line_per_row() -> None:
    lines = render(_dashboard(), WIDTH).splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    for name, shown in _rows(lines, PAIRS + SAMPLES).items():
        assert len(shown) == 1 and "…" in shown[0], f"{name!r}:\n" + "\n".join(lines)


def test_the_figures_beside_a_cut_name_are_not_cut() -> None:
    """Only the name gives way: the figures of the first pair (p_seq 0.01 now, 1e-4 at step 0, a
    change of x100) and of the first sample (p before 1e-4, p now 0.01, S_mem x100, S_prime x4,
    2 exposures, surprising) are printed whole at 80 columns."""
    d = _dashboard()
    lines = render(KeywordPanel(d.states["keyword"], top_n=8), WIDTH).splitlines()
    cells = _rows(lines, PAIRS)[PAIRS[0]][0].split("…", 1)[1].split()
    assert cells[:3] == ["0.0100", "1.0e-04", "×100"]
    assert math.isclose(float(cells[0]), P[2][0], rel_tol=1e-3)
    lines = render(PrimingPanel(d.states["priming"], max_rows=6, threshold=1e-3), WIDTH).splitlines()
    cells = _rows(lines, SAMPLES)[SAMPLES[0]][0].split("…", 1)[1].split()
    assert cells[:6] == ["1.0e-04", "0.0100", "×100", "×4", "2", "yes"]
