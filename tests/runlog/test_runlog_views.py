"""Labelled metric columns, the pandas frame and the notebook display, against the raw reader."""

from __future__ import annotations

import pytest
import torch

from probes.core.records import Record
from probes.runlog import RunWriter, open_run

PAIRS = [{"name": "sky", "context": "the sky is", "keyword": "blue", "group": ""},
         {"name": "sand", "context": "sand is", "keyword": "yellow", "group": ""}]


@pytest.fixture
def run(tmp_path):  # type: ignore[no-untyped-def]
    with RunWriter(tmp_path, flush_every_n=2) as w:
        w.register_source("keyword", {"type": "KeywordProbe", "probe_set": {"pairs": PAIRS}})
        w.register_source("scal", {"type": "Custom"})
        for s in range(5):
            w.write(Record(s, "keyword", {"p_first": torch.tensor([0.1 * s, 0.2 + s], dtype=torch.float64),
                                          "rank": torch.tensor([s + 1, 7])}))
            grid = torch.arange(4.0).reshape(2, 2) * s
            w.write(Record(s, "scal", {"loss": torch.tensor(float(10 - s)), "grid": grid}))
    return open_run(tmp_path)


def test_read_labelled_names_every_column(run) -> None:  # type: ignore[no-untyped-def]
    steps, cols = run.read_labelled("keyword/p_first")
    raw_steps, raw = run.read("keyword/p_first")
    assert steps.tolist() == raw_steps.tolist() == [0, 1, 2, 3, 4]
    assert list(cols) == ["sky", "sand"]
    assert cols["sky"].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert cols["sand"].tolist() == raw[:, 1].tolist()
    _, scalar = run.read_labelled("scal/loss")
    assert list(scalar) == [""] and scalar[""].tolist() == [10.0, 9.0, 8.0, 7.0, 6.0]
    _, grid = run.read_labelled("scal/grid")
    assert list(grid) == ["0,0", "0,1", "1,0", "1,1"] and grid["1,1"].tolist() == [0.0, 3.0, 6.0, 9.0, 12.0]


def test_frame_has_metric_and_element_columns(run) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pandas")
    df = run.frame("keyword")
    assert df.index.name == "step" and df.index.tolist() == [0, 1, 2, 3, 4]
    assert sorted(df.columns.get_level_values("metric").unique()) == ["p_first", "rank"]
    assert df["p_first"]["sand"].tolist() == [0.2, 1.2, 2.2, 3.2, 4.2]
    assert df["rank"]["sky"].tolist() == [1, 2, 3, 4, 5]
    assert run.frame("scal", ["loss"])["loss"].tolist() == [10.0, 9.0, 8.0, 7.0, 6.0]  # scalar: (metric, "")


def test_notebook_html_lists_sources_escaped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with RunWriter(tmp_path, flush_every_n=1) as w:
        w.register_source("a<b>", {"type": "KeywordProbe"})
        w.write(Record(3, "a<b>", {"x": torch.tensor(1.0)}))
    html = open_run(tmp_path)._repr_html_()
    assert "a&lt;b&gt;" in html and "<b>" + str(tmp_path) in html and "<td>1</td><td>3..3</td>" in html
