"""Property: whatever hostile entries sit next to a valid run (symlinks in and out, FIFOs,
directories, dangling links, garbage, huge shapes, odd names), reading is time-bounded, raises only
typed errors (strict), returns exactly the valid records (lenient), opens nothing but regular files
directly inside the run directory, and the CLI prints at most one error line."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hostile_lib import assert_reads_stay_inside, bounded, opened_paths, rewrite, set_shape, shards, small_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.cli.entry import main
from probes.runlog import RunLogError, RunLogWarning, open_run
from probes.runlog import layout as fmt

KINDS = (
    "fifo",
    "directory",
    "link_to_outside_file",
    "link_to_outside_shard",
    "link_to_inside_shard",
    "link_to_directory",
    "dangling_link",
    "link_loop",
    "garbage",
    "huge_shape",
    "zero_hiding_huge",
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("hostile-pristine")
    small_run(base / "run", steps=9, flush_every_n=4)
    small_run(base / "outside", steps=30, flush_every_n=100)
    (base / "secret.txt").write_bytes(b"SECRET" * 100)
    run = open_run(base / "run")
    reference = {name: run.read(name) for name in run.metrics()}
    return base, reference


def entry_name(data: st.DataObject) -> str:
    if data.draw(st.booleans()):  # named like a shard (a new seq, or the seq of a real shard's file)
        return fmt.shard_name(data.draw(st.integers(3, 40)), data.draw(st.integers(0, 2)))
    odd = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12)
    name = data.draw(st.one_of(odd.map(lambda s: "shard-" + s), odd, st.just("shard-000001-t000.safetensors\n")))
    return "x" + name if name in (".", "..") else name


def make_entry(base: Path, run: Path, kind: str, name: str) -> Path | None:
    path = run / name
    if os.path.lexists(path):
        return None
    if kind == "fifo":
        os.mkfifo(path)
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "link_to_outside_file":
        path.symlink_to(base / "secret.txt")
    elif kind == "link_to_outside_shard":
        path.symlink_to(shards(base / "outside")[0])
    elif kind == "link_to_inside_shard":
        path.symlink_to(shards(run)[0].name)
    elif kind == "link_to_directory":
        path.symlink_to(base)
    elif kind == "dangling_link":
        path.symlink_to(base / "does-not-exist")
    elif kind == "link_loop":
        path.symlink_to(name)
    elif kind == "garbage":
        path.write_bytes(os.urandom(64) + (10**6).to_bytes(8, "little"))
    else:  # a copy of a valid shard whose metric shape is out of bounds
        src = shards(base / "run")[0]
        shape = [2**62] if kind == "huge_shape" else [4, 10**15, 0]
        rewrite(src, lambda t, m: set_shape(t, m, "a/v", shape), out=path)
    return None


def read_all(path: Path, strict: bool) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = open_run(path, strict=strict)
        out = {name: run.read(name) for name in run.metrics()}
        for _ in run.records():
            pass
    assert all(issubclass(w.category, RunLogWarning) for w in caught), [str(w.message) for w in caught]
    return out


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_entries_give_typed_errors_only(pristine, data, capsys):
    base, reference = pristine
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(base / "run", run)
        fifos = tuple(f for kind in kinds if (f := make_entry(base, run, kind, entry_name(data))) is not None)
        with opened_paths() as paths:
            try:
                got = bounded(lambda: read_all(run, True), 10, fifos=fifos)
            except RunLogError as e:
                assert "SECRET" not in str(e)
            else:
                assert set(got) == set(reference)
            lenient = bounded(lambda: read_all(run, False), 10, fifos=fifos)
            rc = bounded(lambda: main(["summary", str(run), "--lenient"]), 20, fifos=fifos)
        out, err = capsys.readouterr()
        assert_reads_stay_inside(paths, run)
        assert set(lenient) == set(reference)  # exactly the valid records, whatever else is there
        for name, (steps, values) in lenient.items():
            np.testing.assert_array_equal(steps, reference[name][0])
            np.testing.assert_array_equal(values, reference[name][1])
        assert rc == 0 and "Traceback" not in err and "SECRET" not in out + err
        assert [ln for ln in err.splitlines() if "error:" in ln] == []
