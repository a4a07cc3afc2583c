"""Truncated and bit-flipped shards: only typed errors come out (or, in lenient mode, the intact
rest), never a crash, a hang, a wrong value or a large allocation."""

from __future__ import annotations

import shutil
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.core.records import Record
from probes.runlog import CorruptShardError, RunLogError, RunLogWarning, RunWriter, open_run

PEAK_BYTES = 8 * 1024 * 1024  # shards here are a few KB: anything near this would be a runaway allocation


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine")
    gen = torch.Generator().manual_seed(0)
    with RunWriter(path, flush_every_n=5) as w:
        w.register_source("kw", {"type": "KeywordProbe", "pairs": ["a", "b", "c"]})
        for s in range(12):
            p, rank = torch.rand(3, generator=gen), torch.randint(1, 9, (3,), generator=gen)
            w.write(Record(s, "kw", {"p": p, "rank": rank}))
            if s % 2 == 0:
                dist = torch.rand(2, 2, generator=gen).to(torch.bfloat16)
                w.write(Record(s, "fm", {"dist": dist, "c": torch.tensor(s > 6)}))
    run = open_run(path)
    reference = {name: run.read(name) for name in run.metrics()}
    names = sorted(p.name for p in path.glob("shard-*"))
    return path, names, reference


def read_everything(path: Path, strict: bool) -> dict:
    run = open_run(path, strict=strict)
    out = {name: run.read(name) for name in run.metrics()}
    for _ in run.records():
        pass
    return out


def assert_subset_of_reference(got: dict, reference: dict) -> None:
    for name, (steps, values) in got.items():
        ref_steps, ref_values = reference[name]
        pos = np.searchsorted(ref_steps, steps)
        assert np.all(ref_steps[pos] == steps), name
        assert np.array_equal(values, ref_values[pos]), name


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=3),
    ),
    st.tuples(st.just("length"), st.integers(0, 2**64 - 1)),
)


@settings(max_examples=100, deadline=None, database=None)
@given(which=st.integers(0, 100), mut=mutation)
def test_damaged_shard_gives_typed_errors_only(pristine, which, mut):
    src, names, reference = pristine
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        for n in names:
            shutil.copyfile(src / n, path / n)
        victim = path / names[which % len(names)]
        data = bytearray(victim.read_bytes())
        kind, arg = mut
        if kind == "truncate":
            data = data[: int(arg * len(data))]
        elif kind == "flip":
            for where, xor in arg:
                data[int(where * len(data))] ^= xor
        else:
            data[:8] = arg.to_bytes(8, "little")
        victim.write_bytes(bytes(data))

        tracemalloc.start()
        t0 = time.monotonic()
        try:
            try:
                got = read_everything(path, strict=True)
            except RunLogError as e:  # CorruptShardError, UnsupportedSchemaError, schema conflicts
                assert victim.name in str(e)
            else:  # an undetectable change (e.g. header padding) must leave the data intact
                assert set(got) == set(reference)
                assert_subset_of_reference(got, reference)
                assert all(len(got[k][0]) == len(reference[k][0]) for k in got)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                lenient = read_everything(path, strict=False)
            assert all(issubclass(w.category, RunLogWarning) for w in caught)
            assert_subset_of_reference(lenient, reference)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert time.monotonic() - t0 < 5
        assert peak < PEAK_BYTES


def test_header_length_over_the_cap_is_refused_before_reading(tmp_path, pristine):
    src, names, _ = pristine
    victim = tmp_path / names[0]
    data = bytearray((src / names[0]).read_bytes())
    data[:8] = (10**9).to_bytes(8, "little") + b""
    victim.write_bytes(bytes(data) + b"\0" * 16)
    with pytest.raises(CorruptShardError, match=r"header claims 1000000000 bytes, over the cap of 67108864 bytes"):
        open_run(tmp_path)
    with pytest.raises(CorruptShardError, match=r"header claims \d+ bytes, over the cap of 2048"):
        open_run(tmp_path, max_header_bytes=2048)


def test_lenient_mode_skips_and_reports(tmp_path, pristine):
    src, names, reference = pristine
    for n in names:
        shutil.copyfile(src / n, tmp_path / n)
    bad = tmp_path / names[1]
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(CorruptShardError, match=rf"Corrupt run-log shard .*{bad.name}: truncated.*strict=False"):
        open_run(tmp_path)
    with pytest.warns(RunLogWarning, match=rf"Skipping shard .*{bad.name}: truncated"):
        run = open_run(tmp_path, strict=False)
    assert run.info["skipped"][0]["file"] == bad.name
    steps, _ = run.read("kw/p")
    assert 0 < len(steps) < len(reference["kw/p"][0])
    assert_subset_of_reference({"kw/p": run.read("kw/p")}, reference)


def test_foreign_safetensors_file_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "shard-000000-t000.safetensors")
    with pytest.raises(CorruptShardError, match="not a probes run-log shard"):
        open_run(tmp_path)
