"""The supersede rule against a brute-force reference, and end to end through real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.core.records import Record
from probes.runlog import Branch, RunLogError, RunWriter, open_run
from probes.runlog.lineage import resolve


def brute_force(timelines, tip, blocks):
    """Visible (step -> (block, row)) by walking the ancestry of every record individually."""

    def ancestors(t):  # [(timeline, path of forks from tip down to it)]
        out, forks = [], []
        while t in timelines:
            out.append((t, list(forks)))
            parent, fork = timelines[t]
            forks.append(fork)
            t = parent
        return out

    path = {t: forks for t, forks in ancestors(tip)}
    distance = {t: i for i, (t, _) in enumerate(ancestors(tip))}
    best: dict[int, tuple] = {}
    for b, (t, seq, steps) in enumerate(blocks):
        if t not in path:
            continue
        for row, step in enumerate(steps.tolist()):
            if any(step > f for f in path[t]):
                continue
            key = (-distance[t], seq, row)
            if step not in best or key > best[step][0]:
                best[step] = (key, b, row)
    return {s: (b, r) for s, (_, b, r) in best.items()}


@st.composite
def histories(draw):
    n = draw(st.integers(1, 5))
    timelines = {0: (-1, -1)}
    for t in range(1, n):
        timelines[t] = (draw(st.integers(-1, t - 1)), draw(st.integers(-1, 25)))
    blocks, seq = [], 0
    for t in range(n):
        for _ in range(draw(st.integers(0, 3))):
            steps = draw(st.lists(st.integers(0, 30), max_size=8))
            blocks.append((t, seq, np.array(steps, dtype=np.int64)))
            seq += 1
    tip = draw(st.integers(0, n - 1))
    return timelines, tip, blocks


@settings(max_examples=150, deadline=None, database=None)
@given(histories())
def test_resolve_matches_brute_force(history):
    timelines, tip, blocks = history
    steps, block, row = resolve(timelines, tip, blocks)
    assert np.all(np.diff(steps) > 0)  # exactly one record per step, in order
    got = {int(s): (int(b), int(r)) for s, b, r in zip(steps, block, row)}
    assert got == brute_force(timelines, tip, blocks)


def test_three_timelines_end_to_end(tmp_path):
    """t0 writes 0..9; t1 resumes from step 4 and writes 5..7; t2 resumes t0 from step 6."""

    def session(branch, steps, tag):
        with RunWriter(tmp_path, branch=branch, flush_every_n=3) as w:
            for s in steps:
                w.write(Record(s, "x", {"tag": torch.tensor(tag), "step": torch.tensor(s)}))
        return w.timeline

    before = {}
    assert session(None, range(10), 0) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.glob("shard-*")}
    assert session(Branch(0, 4), range(5, 8), 1) == 1
    run = open_run(tmp_path)
    steps, tags = run.read("x/tag")
    np.testing.assert_array_equal(steps, np.arange(8))
    np.testing.assert_array_equal(tags, [0] * 5 + [1] * 3)
    assert session(Branch(0, 6), range(7, 12), 2) == 2
    run = open_run(tmp_path)
    steps, tags = run.read("x/tag")
    np.testing.assert_array_equal(steps, np.arange(12))
    np.testing.assert_array_equal(tags, [0] * 7 + [2] * 5)
    np.testing.assert_array_equal(run.read("x/step")[1], np.arange(12))
    views = [(t["timeline"], t["in_view"], t["cutoff"]) for t in run.timelines]
    assert views == [(0, True, 6), (1, False, None), (2, True, None)]
    # nothing already flushed was rewritten, and the abandoned branch stays readable
    assert {p.name: p.read_bytes() for p in tmp_path.glob("shard-*") if p.name in before} == before
    steps1, tags1 = open_run(tmp_path, timeline=1).read("x/tag")
    np.testing.assert_array_equal(steps1, np.arange(8))
    np.testing.assert_array_equal(tags1, [0] * 5 + [1] * 3)


def test_resume_marker_supersedes_before_any_record(tmp_path):
    with RunWriter(tmp_path, flush_every_n=2) as w:
        for s in range(6):
            w.write(Record(s, "x", {"v": torch.tensor(s)}))
    w = RunWriter(tmp_path, branch=Branch(0, 2))  # resumed, nothing flushed yet
    assert open_run(tmp_path).steps("x").tolist() == [0, 1, 2]
    assert open_run(tmp_path).status == "running"
    w.close()


@pytest.mark.parametrize("bad", [{"parent": "0", "fork_step": 1}, {"parent": 0, "fork_step": -2}])
def test_branch_validates(bad):
    with pytest.raises(ValueError, match="Expected Branch"):
        Branch(**bad)


def test_a_probe_that_changes_shape_across_a_resume(tmp_path):
    with RunWriter(tmp_path, flush_every_n=2) as w:
        for s in range(4):
            w.write(Record(s, "x", {"v": torch.full((3,), float(s)), "k": torch.tensor(s)}))
    with RunWriter(tmp_path, branch=Branch(0, 3), flush_every_n=2) as w:
        for s in range(4, 7):
            w.write(Record(s, "x", {"v": torch.full((5,), float(s)), "k": torch.tensor(s)}))
    run = open_run(tmp_path)
    with pytest.raises(RunLogError, match=r"x/v is float32\[5\] in shard-000004-t001.*float32\[3\] in shard-000000"):
        run.read("x/v")
    np.testing.assert_array_equal(run.read("x/v", stop=4)[1], np.repeat(np.arange(4.0)[:, None], 3, axis=1))
    np.testing.assert_array_equal(run.read("x/v", start=4)[1], np.repeat(np.arange(4.0, 7.0)[:, None], 5, axis=1))
    np.testing.assert_array_equal(run.read("x/k")[1], np.arange(7))  # unaffected metrics read across
    with pytest.raises(RunLogError, match="the probe changed between sessions"):
        list(run.records("x"))
    assert [r.tensors["v"].shape[0] for r in run.records("x", start=4)] == [5, 5, 5]
