"""``probes compare RUN RUN`` overlays keyword, priming and format results of real run logs; every
printed number is checked against the value read from the logs (formatted as the table formats it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tests.cli._runs import make_run

from probes import open_run
from probes.cli import main
from probes.console.numbers import fmt_num
from probes.formats.view import format_names
from probes.keyword.view import pair_names
from probes.priming.view import sample_names


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("overlay")
    return make_run(root / "a", seed=0, lr=1e-2), make_run(root / "b", seed=1, lr=3e-2)


def _row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (cells are split on 2+ spaces)."""
    for line in text.splitlines():
        cells = [c for c in line.strip().split("  ") if c.strip()]
        cells = [c.strip() for c in cells]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n\n", start)
    return text[start:] if end < 0 else text[start:end]


def test_overlay_prints_the_numbers_of_the_logs(runs, capsys, tmp_path) -> None:
    a, b = runs
    out_json = tmp_path / "o.json"
    assert main(["compare", str(a), str(b), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    ra, rb = open_run(a), open_run(b)

    # keyword: final p_seq and its change per pair, from logp_seq
    kw = _section(text, "keyword (keyword): final p_seq")
    for name in pair_names(ra.describe("keyword")):
        cells = _row(kw, name)
        expect = []
        for r in (ra, rb):
            _, lp = r.read("keyword/logp_seq")
            j = pair_names(r.describe("keyword")).index(name)
            lp10 = lp[:, j].astype(np.float64) / math.log(10)
            expect += [fmt_num(10.0 ** lp10[-1]), fmt_num(lp10[-1] - lp10[0])]
        assert cells[1:] == expect, (name, cells)
    # keyword curve: mean log10 p_seq over pairs at the last step
    curve = _section(text, "keyword (keyword): mean log10 p_seq")
    last = int(ra.steps("keyword")[-1])
    means = [fmt_num(float(np.mean(r.read("keyword/logp_seq")[1][-1].astype(np.float64) / math.log(10))))
             for r in (ra, rb)]
    assert _row(curve, str(last))[1:] == means

    # priming: final log10 S_prime and P_before per sample
    pr = _section(text, "priming (priming)")
    for name in sample_names(ra.describe("priming")):
        cells = _row(pr, name)
        expect = []
        for r in (ra, rb):
            i = sample_names(r.describe("priming")).index(name)
            prime, before = r.read("priming/log10_s_prime")[1][-1, i], r.read("priming/p_before")[1][-1, i]
            expect += [fmt_num(prime), fmt_num(before)]
        assert cells[1:] == expect

    # format: final share of every format, and the entropy
    fm = _section(text, "format (format)")
    for k, name in enumerate(format_names(ra.describe("format"))):
        assert _row(fm, name)[1:] == [fmt_num(r.read("format/dist")[1][-1, k]) for r in (ra, rb)]
    assert _row(fm, "entropy (bits)")[1:] == [fmt_num(r.read("format/entropy_bits")[1][-1]) for r in (ra, rb)]

    report = json.loads(out_json.read_text())
    assert [s["kind"] for s in report["sections"]] == ["keyword", "priming", "format"]


def test_overlay_plot_and_errors(runs, capsys, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    a, b = runs
    png = tmp_path / "overlay.png"
    assert main(["compare", str(a), str(b), "--plot", str(png), "--quiet"]) == 0
    assert png.stat().st_size > 1000
    assert main(["compare", str(a)]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 1
    assert "error" in capsys.readouterr().err
