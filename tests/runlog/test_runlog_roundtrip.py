"""What is written is exactly what is read back: many shards, dtypes, shapes, ranges, live reads."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from probes.core.records import Record
from probes.runlog import (
    CorruptShardError,
    InvalidRecordError,
    RunLogError,
    RunWriter,
    UnknownMetricError,
    open_run,
)

# name -> (dtype, per-record shape)
SCHEMA_A = {
    "f32": (torch.float32, (3,)),
    "f64": (torch.float64, ()),
    "f32b": (torch.float32, (3,)),  # shares a stacking group with f32
    "f64b": (torch.float64, ()),  # and with f64
    "bf16": (torch.bfloat16, (2, 2)),
    "f16": (torch.float16, (4,)),
    "i64": (torch.int64, (5,)),
    "i32": (torch.int32, (1,)),
    "i16": (torch.int16, (2,)),
    "i8": (torch.int8, (2,)),
    "u8": (torch.uint8, (3,)),
    "flag": (torch.bool, (6,)),
    "empty": (torch.float32, (0,)),
}
SCHEMA_B = {"x": (torch.float32, (2, 3, 2)), "n": (torch.int64, ())}


def random_tensor(gen: torch.Generator, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) < 0.5
    if dtype.is_floating_point:
        t = (torch.randn(shape, generator=gen, dtype=torch.float64) * 1e3).to(dtype)
        if t.numel() >= 3:  # special values survive too
            t.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -0.0], dtype=dtype)
        return t
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=gen, dtype=torch.int64).to(dtype)


def make_records(n_steps: int, seed: int = 0) -> list[Record]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(n_steps):
        out.append(Record(step, "a", {k: random_tensor(gen, d, s) for k, (d, s) in SCHEMA_A.items()}, epoch=step // 7))
        if step % 3 == 0:
            out.append(Record(step, "b", {k: random_tensor(gen, d, s) for k, (d, s) in SCHEMA_B.items()}))
    return out


def reference(records: list[Record], source: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in records if r.source == source]
    values = torch.stack([r.tensors[name] for r in rows])
    if values.dtype == torch.bfloat16:
        values = values.float()  # the reader widens bfloat16 exactly
    return np.array([r.step for r in rows]), values.numpy()


def write_all(path: Path, records: list[Record], **kwargs) -> RunWriter:
    with RunWriter(path, **kwargs) as w:
        w.register_source("a", {"type": "Synthetic", "note": "all dtypes"})
        w.register_source("b", {"type": "Synthetic", "note": "3-d"})
        for r in records:
            w.write(r)
    return w


@pytest.mark.parametrize("background", [False, True])
def test_round_trip_many_shards_dtypes_shapes(tmp_path, background):
    records = make_records(40)
    w = write_all(tmp_path / "run", records, flush_every_n=9, background=background)
    shards = sorted(p.name for p in (tmp_path / "run").glob("shard-*.safetensors"))
    assert len(shards) == w.n_shards == -(-len(records) // 9) + 1  # full flushes, remainder, final marker
    run = open_run(tmp_path / "run")
    assert run.sources() == ["a", "b"]
    assert run.metrics() == [f"a/{k}" for k in SCHEMA_A] + [f"b/{k}" for k in SCHEMA_B]
    assert run.status == "finished"
    for name in run.metrics():
        source, metric = name.split("/")
        steps, values = run.read(name)
        ref_steps, ref_values = reference(records, source, metric)
        np.testing.assert_array_equal(steps, ref_steps)
        assert values.dtype == ref_values.dtype and values.shape == ref_values.shape
        assert np.array_equal(values, ref_values, equal_nan=values.dtype.kind == "f"), name
    np.testing.assert_array_equal(run.epochs("a"), np.arange(40) // 7)
    assert run.describe("b") == {"type": "Synthetic", "note": "3-d"}
    assert run.describes == {"a": {"type": "Synthetic", "note": "all dtypes"}, "b": run.describe("b")}
    # records() rebuilds Record objects with the original torch dtypes (bfloat16 included), step ordered
    back = list(run.records())
    assert [(r.step, r.source) for r in back] == [(r.step, r.source) for r in records]
    times = {"a": run.times("a"), "b": run.times("b")}
    assert np.all(np.diff(times["a"]) >= 0) and times["a"][0] > 1e9  # wall-clock seconds, in write order
    for got, want in zip(back, records):
        assert got.epoch == want.epoch
        assert got.extra["time"] == times[got.source][np.searchsorted(run.steps(got.source), got.step)]
        for k, t in want.tensors.items():
            assert got.tensors[k].dtype == t.dtype and torch.equal(
                torch.nan_to_num(got.tensors[k].float()), torch.nan_to_num(t.float())
            ), (want.step, k)


def test_shards_are_plain_safetensors(tmp_path):
    records = make_records(10)
    write_all(tmp_path, records, flush_every_n=4)
    got: dict[str, list[torch.Tensor]] = {}
    for path in sorted(tmp_path.glob("shard-*.safetensors")):
        for k, t in load_file(path).items():
            got.setdefault(k, []).append(t)
    steps = torch.cat(got["a/__step__"])
    assert steps.tolist() == list(range(10))
    f32 = torch.cat(got["a/f32"])
    want = torch.stack([r.tensors["f32"] for r in records if r.source == "a"])
    assert torch.equal(torch.nan_to_num(f32), torch.nan_to_num(want))


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.int16, torch.bool, torch.float64]),
    n=st.integers(1, 25),
    every=st.integers(1, 12),
)
def test_round_trip_property(tmp_path_factory, shape, dtype, n, every):
    path = tmp_path_factory.mktemp("prop")
    gen = torch.Generator().manual_seed(n * 31 + every)
    records = [
        Record(s * 2, "s", {"m": random_tensor(gen, dtype, shape), "m2": random_tensor(gen, dtype, shape)})
        for s in range(n)
    ]
    with RunWriter(path, flush_every_n=every) as w:
        for r in records:
            w.write(r)
    for name in ("m", "m2"):
        steps, values = open_run(path).read(f"s/{name}")
        ref_steps, ref_values = reference(records, "s", name)
        np.testing.assert_array_equal(steps, ref_steps)
        assert values.shape == (n, *shape)
        assert np.array_equal(values, ref_values, equal_nan=values.dtype.kind == "f")


def test_step_range_and_prefix(tmp_path):
    records = make_records(30)
    write_all(tmp_path, records, flush_every_n=5)
    run = open_run(tmp_path)
    steps, values = run.read("a/i64", start=7, stop=19)
    ref_steps, ref_values = reference(records, "a", "i64")
    keep = (ref_steps >= 7) & (ref_steps < 19)
    np.testing.assert_array_equal(steps, ref_steps[keep])
    np.testing.assert_array_equal(values, ref_values[keep])
    steps_b, _ = run.read("b/n", start=4)
    assert steps_b.tolist() == [6, 9, 12, 15, 18, 21, 24, 27]
    assert run.read("a/f32", start=100)[1].shape == (0, 3)
    assert run.metrics("b/") == ["b/x", "b/n"]
    assert set(run.read_many("a/i")) == {"a/i64", "a/i32", "a/i16", "a/i8"}
    assert [r.step for r in run.records("b", start=3, stop=10)] == [3, 6, 9]


def test_reader_follows_a_live_writer(tmp_path):
    w = RunWriter(tmp_path, flush_every_n=1000)
    for s in range(5):
        w.write(Record(s, "live", {"v": torch.tensor(float(s))}))
    run = open_run(tmp_path)
    assert run.sources() == [] and run.status == "empty"
    w.flush()
    (tmp_path / ".tmp-shard-000099-t000.safetensors.1").write_bytes(b"half a shard")  # a writer mid-flush
    assert run.refresh() is True
    np.testing.assert_array_equal(run.read("live/v")[1], np.arange(5, dtype=np.float32))
    assert run.status == "running"
    assert run.refresh() is False
    for s in range(5, 8):
        w.write(Record(s, "live", {"v": torch.tensor(float(s))}))
    w.close()
    assert run.refresh() is True
    np.testing.assert_array_equal(run.steps("live"), np.arange(8))
    assert run.status == "finished"


def test_continue_with_tip_appends_without_superseding(tmp_path):
    with RunWriter(tmp_path, flush_every_n=3) as w:
        for s in range(7):
            w.write(Record(s, "x", {"v": torch.tensor(s)}))
    with RunWriter(tmp_path, branch=open_run(tmp_path).tip(), flush_every_n=3) as w:
        assert w.timeline == 1 and w.fork_step == 6
        for s in range(7, 12):
            w.write(Record(s, "x", {"v": torch.tensor(s)}))
    steps, v = open_run(tmp_path).read("x/v")
    np.testing.assert_array_equal(steps, np.arange(12))
    np.testing.assert_array_equal(v, np.arange(12))


def test_time_based_flush(tmp_path):
    w = RunWriter(tmp_path, flush_every_n=10_000, flush_every_s=0.05)
    w.write(Record(0, "t", {"v": torch.tensor(0.0)}))
    assert w.n_shards == 0 and not w.maybe_flush()
    time.sleep(0.06)
    assert w.maybe_flush() and w.n_shards == 1
    w.write(Record(1, "t", {"v": torch.tensor(1.0)}))
    time.sleep(0.06)
    w.write(Record(2, "t", {"v": torch.tensor(2.0)}))  # the write notices the age and flushes
    assert w.n_shards == 2 and w.n_buffered == 0
    w.close()


def test_close_status_and_on_flush(tmp_path):
    seen = []
    with pytest.raises(ZeroDivisionError):
        with RunWriter(tmp_path, flush_every_n=2, on_flush=seen.append) as w:
            for s in range(3):
                w.write(Record(s, "x", {"v": torch.tensor(s)}))
            1 / 0  # noqa: B018
    assert [(i.seq, i.n_records, i.step_min, i.step_max, i.status) for i in seen] == [
        (0, 2, 0, 1, "running"),
        (1, 1, 2, 2, "failed"),
    ]
    assert open_run(tmp_path).status == "failed"


def test_writer_refuses_an_existing_run_and_a_second_writer(tmp_path):
    w = RunWriter(tmp_path)
    with pytest.raises(RunLogError, match=rf"{tmp_path} is being written by another RunWriter \(pid {os.getpid()}\)"):
        RunWriter(tmp_path)
    w.write(Record(0, "x", {"v": torch.tensor(0)}))
    w.close()
    with pytest.raises(RunLogError, match=r"already holds a run log \(1 shards\).*branch=open_run\(path\).tip\(\)"):
        RunWriter(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunLogError, match="exists and is not a directory"):
        RunWriter(tmp_path / "file")


def test_bad_records_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="`flush_every_n` to be a positive int, got 0"):
        RunWriter(tmp_path, flush_every_n=0)
    with pytest.raises(ValueError, match=r"`flush_every_s`.*got -1"):
        RunWriter(tmp_path, flush_every_s=-1)
    w = RunWriter(tmp_path, flush_every_n=100)
    with pytest.raises(ValueError, match=r"describe\(\) of source 'x' to be JSON-serialisable"):
        w.register_source("x", {"fn": object()})
    with pytest.raises(ValueError, match="printable string without '/', got 'a/b'"):
        w.write(Record(0, "a/b", {"v": torch.tensor(1.0)}))
    w.write(Record(0, "x", {"v": torch.zeros(3)}))
    with pytest.raises(RunLogError, match=r"at step 1 has metrics \['w'\], but earlier records of this source have"):
        w.write(Record(1, "x", {"w": torch.zeros(3)}))
    # refused at write(), before buffering: the flush never sees it
    with pytest.raises(InvalidRecordError, match=r"x/v' at step 1 is float32\[4\] on cpu, but earlier records are f"):
        w.write(Record(1, "x", {"v": torch.zeros(4)}))
    w.write(Record(2, "x", {"v": [1.0, 2.0, 3.0]}))  # converted: a list of floats is fine
    with pytest.raises(ValueError, match=r"'c/z' at step 2 has dtype torch.complex64, which the run log does not"):
        w.write(Record(2, "c", {"z": torch.zeros(2, dtype=torch.complex64)}))
    w.flush()
    w.close()
    np.testing.assert_array_equal(open_run(tmp_path).read("x/v")[1], [[0, 0, 0], [1, 2, 3]])
    assert open_run(tmp_path).sources() == ["x"]
    with pytest.raises(RunLogError, match="is closed"):
        w.write(Record(3, "x", {"v": torch.zeros(3)}))


def test_dtype_change_between_flushes_is_named(tmp_path):
    with RunWriter(tmp_path, flush_every_n=100) as w:
        w.write(Record(0, "x", {"v": torch.zeros(2)}))
        w.flush()
        with pytest.raises(InvalidRecordError, match=r"'x/v' at step 1 is float64\[2\] on cpu, but earlier records"):
            w.write(Record(1, "x", {"v": torch.zeros(2, dtype=torch.float64)}))


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(RunLogError, match="does not exist"):
        open_run(tmp_path / "nope")
    write_all(tmp_path, make_records(6), flush_every_n=4)
    run = open_run(tmp_path)
    with pytest.raises(UnknownMetricError, match=r"no metric 'a/zzz'; known: \['a/f32'"):
        run.read("a/zzz")
    with pytest.raises(UnknownMetricError, match="fully qualified metric name 'source/name', got 'f32'"):
        run.read("f32")
    with pytest.raises(RunLogError, match=r"has no timeline 5; it has \[0\]"):
        open_run(tmp_path, timeline=5)
    shard = sorted(tmp_path.glob("shard-*"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CorruptShardError, match=rf"{shard.name}: truncated"):
        open_run(tmp_path)


def test_bulk_host_transfer_one_per_metric(tmp_path):
    """A flush moves each group of same-dtype, same-shape metrics to the host in one transfer."""
    from torch.overrides import TorchFunctionMode

    class CountTransfers(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.item, torch.Tensor.tolist):
                self.n += 1
            return func(*args, **(kwargs or {}))

    w = RunWriter(tmp_path, flush_every_n=1000)
    for s in range(50):
        a, a2 = torch.full((3,), float(s)), torch.full((3,), -float(s))
        w.write(Record(s, "x", {"a": a, "b": torch.tensor(s), "a2": a2, "c": torch.zeros(2, 2)}))
    with CountTransfers() as mode:
        w.flush()
    assert mode.n == 3  # groups (a, a2), (b,), (c,): fifty records, four metrics, three transfers
    w.close()
    _, a2 = open_run(tmp_path).read("x/a2")
    np.testing.assert_array_equal(a2, -np.repeat(np.arange(50.0, dtype=np.float32)[:, None], 3, axis=1))


def test_a_forked_child_cannot_write_the_parents_log(tmp_path):
    w = RunWriter(tmp_path)
    w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
    pid = os.fork()
    if pid == 0:  # the child: flushing must refuse, and exiting must not write the copied buffer
        try:
            w.flush()
            code = 3
        except RunLogError as e:
            code = 0 if "must not write" in str(e) else 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    w.close()
    assert open_run(tmp_path).steps("x").tolist() == [0]
    assert len(list(tmp_path.glob("shard-*"))) == 1
