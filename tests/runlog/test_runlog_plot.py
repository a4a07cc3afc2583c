"""The plot draws what the log holds: curve data, scatter positions, threshold and collapse lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from runlog_testlib import write_synthetic

from probes.cli.plot import PANEL_HEIGHT, build_figure
from probes.runlog import RunWriter, open_run

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot")
    ref = write_synthetic(path, steps=30, collapse_at=18)
    return path, ref


def test_panels_hold_the_logged_numbers(synthetic):
    path, ref = synthetic
    fig = build_figure(open_run(path), max_pairs=12)
    kw_ax, pr_ax, fm_ax = fig.axes
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["keyword", "priming", "format"]
    # keyword: one curve per pair, y = p_seq = exp(logp_seq) at every step (the ranking metric), log scale
    lines = kw_ax.get_lines()
    assert [ln.get_label() for ln in lines] == [f"pair{i}" for i in range(4)]
    for j, ln in enumerate(lines):
        np.testing.assert_array_equal(ln.get_xdata(), np.arange(30))
        want = 10.0 ** (ref["keyword/logp_seq"][:, j].astype(np.float64) / math.log(10))
        np.testing.assert_allclose(ln.get_ydata(), want, rtol=1e-12)
    assert kw_ax.get_yscale() == "log"
    # priming: points at (log10 p_before, log10 s_prime) of the last record, split at the threshold
    red, blue = pr_ax.collections[:2]
    x_ref, y_ref = np.log10(ref["p_before"]), ref["priming/log10_s_prime"][-1]
    surprising = ref["p_before"] < 1e-3
    np.testing.assert_allclose(red.get_offsets(), np.c_[x_ref[surprising], y_ref[surprising]])
    np.testing.assert_allclose(blue.get_offsets(), np.c_[x_ref[~surprising], y_ref[~surprising]])
    threshold = [ln for ln in pr_ax.get_lines() if ln.get_label().startswith("threshold")]
    assert threshold[0].get_xdata()[0] == pytest.approx(-3.0)
    # format: stacked areas for every format plus "other", collapse marked at the first collapsed step
    assert [t.get_text() for t in fm_ax.get_legend().get_texts()] == [*ref["formats"], "other", "collapse at step 18"]
    collapse = [ln for ln in fm_ax.get_lines() if ln.get_label().startswith("collapse")]
    assert collapse[0].get_xdata()[0] == 18
    top = fm_ax.collections[-1].get_paths()[0].vertices
    assert np.isclose(top[:, 1].max(), 1.0)  # the stack reaches 1 (shares sum to one)


def test_png_size_and_content(synthetic, tmp_path):
    import matplotlib.image

    path, _ = synthetic
    fig = build_figure(open_run(path), width=6)
    out = tmp_path / "p.png"
    fig.savefig(out, dpi=40)
    img = matplotlib.image.imread(out)
    assert img.shape[:2] == (round(3 * PANEL_HEIGHT * 40), 6 * 40)
    rgb = img[..., :3]
    assert rgb.std() > 0.1 and (rgb.min(axis=2) < 0.9).mean() > 0.05


def test_sources_absent_or_unknown_are_skipped(tmp_path):
    import torch

    from probes.core.records import Record

    with RunWriter(tmp_path) as w:
        w.register_source("loss", {"type": "Custom"})
        w.write(Record(0, "loss", {"v": torch.tensor(1.0)}))
    assert build_figure(open_run(tmp_path)) is None
    with RunWriter(tmp_path / "fmt") as w:
        w.register_source("format", {"type": "FormatProbe", "formats": ["a"]})
        for s in range(3):
            w.write(Record(s, "format", {"dist": torch.tensor([1.0 - s / 4, s / 4])}))
    fig = build_figure(open_run(tmp_path / "fmt"))
    assert len(fig.axes) == 1 and "collapse" not in fig.axes[0].get_title()
    assert math.isclose(fig.get_size_inches()[1], PANEL_HEIGHT)
