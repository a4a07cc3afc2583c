"""Attacks on the reader from a hostile run directory (issue 21, breaks 1-8): each test builds the
attack and shows a typed error (strict), the rest of the run (lenient), no hang, no read outside
the directory, and one clean line from the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch
from hostile_lib import (
    assert_reads_stay_inside,
    bounded,
    opened_paths,
    read_shard,
    rename_source,
    rewrite,
    set_shape,
    shards,
    small_run,
)

from probes.cli.entry import main
from probes.core.records import Record
from probes.runlog import (
    CorruptShardError,
    InvalidRecordError,
    RunLogWarning,
    RunWriter,
    UnsafeEntryError,
    open_run,
)
from probes.runlog import layout as fmt

SHARD = "shard-000099-t000.safetensors"


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if "warning:" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"probes {command}: error: ") and "Traceback" not in err, err
    return lines[0]


def lenient(path, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = open_run(path, strict=False, **kwargs)
    assert all(issubclass(w.category, RunLogWarning) for w in caught), [str(w.message) for w in caught]
    return run, [str(w.message) for w in caught]


# 1 -------------------------------------------------------------------------------------------
def test_fifo_named_like_a_shard_is_refused_without_blocking(tmp_path, capsys):
    small_run(tmp_path)
    fifo = tmp_path / SHARD
    os.mkfifo(fifo)
    with pytest.raises(UnsafeEntryError, match=r"shard-000099-t000.safetensors: it is a FIFO \(named pipe\)"):
        bounded(lambda: open_run(tmp_path), 10, fifos=(fifo,))
    run, skipped = bounded(lambda: lenient(tmp_path), 10, fifos=(fifo,))
    assert run.steps("a").tolist() == list(range(6)) and "FIFO" in skipped[0]
    for command in ("summary", "replay", "export"):
        extra = {"export": ["--csv", tmp_path.parent / "csv"], "replay": ["--speed", "0"]}.get(command, [])
        rc, _, err = bounded(lambda c=command, e=extra: cli(capsys, c, tmp_path, *e), 20, fifos=(fifo,))
        assert rc == 1 and "FIFO" in one_error_line(err, command)
    rc, out, err = bounded(lambda: cli(capsys, "summary", tmp_path, "--lenient"), 20, fifos=(fifo,))
    assert rc == 0 and "FIFO" in err and "a (Synthetic): 6 records" in out


# 2 -------------------------------------------------------------------------------------------
def test_directory_named_like_a_shard(tmp_path, capsys):
    small_run(tmp_path)
    (tmp_path / SHARD).mkdir()
    with pytest.raises(UnsafeEntryError, match="it is a directory, not a regular file"):
        open_run(tmp_path)
    run, skipped = lenient(tmp_path)
    assert run.steps("a").tolist() == list(range(6)) and "directory" in skipped[0]
    assert [s["file"] for s in run.info["skipped"]] == [SHARD]
    rc, _, err = cli(capsys, "summary", tmp_path)
    assert rc == 1 and "is a directory" in one_error_line(err, "summary")


# 3 -------------------------------------------------------------------------------------------
def test_symlinks_out_of_the_run_dir_are_never_followed(tmp_path, capsys):
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    small_run(run_dir)
    small_run(elsewhere, steps=40, describe={"type": "Synthetic", "origin": "elsewhere"})
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET-do-not-quote-me" * 4)
    (run_dir / "shard-000050-t000.safetensors").symlink_to(secret)
    (run_dir / "shard-000051-t000.safetensors").symlink_to(shards(elsewhere)[0])  # a valid shard, elsewhere
    with opened_paths() as paths:
        with pytest.raises(UnsafeEntryError, match="symbolic link") as exc:
            open_run(run_dir)
        assert "TOPSECRET" not in str(exc.value)
        run, skipped = lenient(run_dir)
        for _ in run.records():
            pass
    assert_reads_stay_inside(paths, run_dir)
    assert len(skipped) == 2 and all("symbolic link" in s for s in skipped)
    assert run.steps("a").tolist() == list(range(6))  # the 40 steps elsewhere are not loaded
    assert "origin" not in run.describe("a")
    rc, _, err = cli(capsys, "summary", run_dir)
    assert rc == 1 and "TOPSECRET" not in err and "symbolic link" in one_error_line(err, "summary")


# 4 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[10**30, 0], [10**12, 0], [0, 10**12], [2**40, 2**40, 0]])
def test_zero_size_dimension_cannot_hide_a_huge_one(tmp_path, capsys, shape):
    small_run(tmp_path, steps=4, flush_every_n=100)
    first = shards(tmp_path)[0]
    rewrite(first, lambda t, m: set_shape(t, m, "a/v", [4, *shape]))
    with pytest.raises(CorruptShardError, match=r"tensor 'a/v': shape .* is out of bounds"):
        open_run(tmp_path)
    run, skipped = lenient(tmp_path)
    assert run.sources() == [] and "out of bounds" in skipped[0]
    for command in ("summary", "export"):
        extra = ["--csv", tmp_path / "csv"] if command == "export" else []
        rc, _, err = cli(capsys, command, tmp_path, *extra)
        assert rc == 1 and "out of bounds" in one_error_line(err, command)


def test_legitimate_empty_metrics_still_read(tmp_path, capsys):
    with RunWriter(tmp_path) as w:
        for s in range(3):
            w.write(Record(s, "e", {"none": torch.zeros(0), "grid": torch.zeros(5, 0, 7), "x": torch.tensor(s)}))
    run = open_run(tmp_path)
    assert run.read("e/none")[1].shape == (3, 0) and run.read("e/grid")[1].shape == (3, 5, 0, 7)
    rc, out, _ = cli(capsys, "summary", tmp_path)
    assert rc == 0 and "grid" in out
    rc, _, _ = cli(capsys, "export", tmp_path, "--csv", tmp_path / "csv")
    assert rc == 0 and (tmp_path / "csv" / "e.csv").read_text().splitlines()[0] == "step,epoch,time,x"


# 5 -------------------------------------------------------------------------------------------
def test_1500_conflicting_shards_of_one_timeline(tmp_path):
    small_run(tmp_path, steps=2, flush_every_n=100)  # seq 0: 2 records; seq 1: finished marker
    with RunWriter(tmp_path, branch=open_run(tmp_path).tip(), flush_every_n=1) as w:
        w.write(Record(2, "a", {"v": torch.full((3,), 2.0), "k": torch.tensor(20)}))
    template = next(p for p in shards(tmp_path) if read_shard(p)[1]["timeline"] == 1 and read_shard(p)[1]["sources"])
    for k in range(1500):  # timeline 1 claims a different fork step in every further shard

        def mutate(t, m, k=k):  # type: ignore[no-untyped-def]
            m["seq"], m["fork_step"] = 100 + k, 10_000 + k

        rewrite(template, mutate, out=tmp_path / fmt.shard_name(100 + k, 1))
    assert sys.getrecursionlimit() < 1500
    with pytest.raises(CorruptShardError, match="timeline 1 has parent/fork 0/10000 here but 0/1"):
        open_run(tmp_path)
    run, skipped = bounded(lambda: lenient(tmp_path), 60)
    assert len(skipped) == 1500
    assert run.steps("a").tolist() == [0, 1, 2]


# 6 -------------------------------------------------------------------------------------------
KEYWORD = {"type": "KeywordProbe", "probe_set": {"pairs": [{"name": "p0"}, {"name": "p1"}, {"name": "p2"}]}}
FORMAT = {"type": "FormatProbe", "formats": ["a", "b"]}
PRIMING = {"type": "PrimingProbe", "samples": [{"name": "s0"}, {"name": "s1"}]}


@pytest.mark.parametrize(
    "describe, tensors, problem",
    [
        (KEYWORD, {"p_first": torch.tensor(0.5)}, r"'p_first' has per-record shape \[\], but it is a vector of pairs"),
        (KEYWORD, {"p_first": torch.rand(3), "rank": torch.ones(2, dtype=torch.int64)}, "have 3 and 2 elements"),
        (KEYWORD, {"p_first": torch.rand(4)}, "has 4 elements but describe\\(\\) lists 3 pairs"),
        (FORMAT, {"dist": torch.rand(3), "dominant": torch.zeros(3, dtype=torch.int64)}, "'dominant' has per-record"),
        (FORMAT, {"dist": torch.rand(3), "collapsed": torch.zeros(2, dtype=torch.bool)}, "'collapsed' has per-rec"),
        (PRIMING, {"p_before": torch.rand(2, 2)}, r"'p_before' has per-record shape \[2, 2\]"),
        (PRIMING, {"surprising": torch.zeros(2, dtype=torch.complex64)}, "complex64"),
    ],
)
def test_shapes_must_match_the_probe_type(tmp_path, capsys, describe, tensors, problem):
    with RunWriter(tmp_path / "w") as w:  # the writer refuses the record at write()
        w.register_source("p", describe)
        with pytest.raises(InvalidRecordError, match=problem):
            w.write(Record(0, "p", tensors))
    if any(t.dtype == torch.complex64 for t in tensors.values()):
        return  # cannot be stored at all
    with RunWriter(tmp_path / "r") as w:  # a checksum-valid shard that claims the probe type anyway
        w.register_source("p", {"type": "Synthetic"})
        for s in range(3):
            w.write(Record(s, "p", tensors))
    for p in shards(tmp_path / "r"):
        rewrite(p, lambda t, m: [b.update(describe=describe) for b in m["sources"].values()])
    with pytest.raises(CorruptShardError, match=problem):
        open_run(tmp_path / "r")
    run, skipped = lenient(tmp_path / "r")
    assert run.sources() == [] and len(skipped) == 1
    for command in ("summary", "replay", "plot"):
        extra = {"replay": ["--speed", "0"], "plot": ["-o", tmp_path / "x.png"]}.get(command, [])
        rc, _, err = cli(capsys, command, tmp_path / "r", *extra)
        assert rc in (1, 2) and one_error_line(err, command)


def test_overlapping_byte_ranges_are_refused(tmp_path):
    small_run(tmp_path, steps=4, flush_every_n=100)
    first = shards(tmp_path)[0]

    def overlap(t, m):  # type: ignore[no-untyped-def]
        t["a/__epoch__"]["data_offsets"] = t["a/__step__"]["data_offsets"]
        m["tensors"]["a/__epoch__"][2] = m["tensors"]["a/__step__"][2]

    rewrite(first, overlap)
    with pytest.raises(CorruptShardError, match="tensors 'a/__epoch__' and 'a/__step__' overlap|overlap"):
        open_run(tmp_path)


# 7 -------------------------------------------------------------------------------------------
def test_non_finite_and_odd_times_in_run_info(tmp_path, capsys):
    info = {"lr": math.inf, "loss0": math.nan, "started": 1.7e12, "neg": -math.inf}  # a millisecond timestamp
    with RunWriter(tmp_path, run_info=info) as w:
        w.write(Record(0, "a", {"v": torch.tensor(1.0)}))
    rc, out, err = cli(capsys, "summary", tmp_path)
    assert rc == 0, err
    assert "lr=inf" in out and "loss0=nan" in out and "(not a valid time)" in out
    rc, out, err = cli(capsys, "summary", tmp_path, "--json")
    assert rc == 0, err

    def refuse(token: str) -> None:
        raise AssertionError(f"non-strict JSON token {token}")

    doc = json.loads(out, parse_constant=refuse)
    run = doc["run"]["run"]
    assert (run["lr"], run["loss0"], run["neg"], run["started"]) == ("Infinity", "NaN", "-Infinity", 1.7e12)
    for p in shards(tmp_path):  # Infinity and NaN as the creation time of every shard
        rewrite(p, lambda t, m: m.update(created=float("inf")))
    rc, out, err = cli(capsys, "summary", tmp_path)
    assert rc == 0 and "updated inf (not a valid time)" in out, err
    rc, out, err = cli(capsys, "summary", tmp_path, "--json")
    assert rc == 0 and json.loads(out, parse_constant=refuse)["run"]["updated"] == "Infinity"


# 8 -------------------------------------------------------------------------------------------
def test_unprintable_and_unencodable_names(tmp_path, capsys):
    bad_pair = "pair\ud800x"
    describe = {"type": "KeywordProbe", "probe_set": {"pairs": [{"name": bad_pair}, {"name": "ok\x00\n"}]}}
    with RunWriter(tmp_path / "w") as w:  # the writer refuses such source and metric names at write()
        for source, metric in (("a\x00b", "v"), ("a\ud800", "v"), ("a", "v\x00"), ("a", "\ud800")):
            with pytest.raises(InvalidRecordError, match="control character|lone surrogate"):
                w.write(Record(0, source, {metric: torch.zeros(2)}))
    run_dir = tmp_path / "r"
    with RunWriter(run_dir) as w:  # but a directory crafted by hand may hold anything
        w.register_source("keyword", describe)
        for s in range(3):
            w.write(Record(s, "keyword", {"p_first": torch.tensor([0.1, 0.2]) * (s + 1), "rank": torch.tensor([1, 2])}))
    for p in shards(run_dir):
        rewrite(p, lambda t, m: rename_source(t, m, "keyword", "kw\x00\ud800/../x") if m["sources"] else None)
    rc, _, err = cli(capsys, "summary", run_dir)  # '/' in a source name: refused as corrupt
    assert rc == 1 and "contains '/'" in one_error_line(err, "summary")
    for p in shards(run_dir):
        rewrite(p, lambda t, m: m["sources"] and rename_source(t, m, "kw\x00\ud800/../x", "kw\x00\ud800\x1b[2J"))
    rc, out, err = cli(capsys, "summary", run_dir)
    assert rc == 0, err
    assert "kw\\x00\\ud800\\x1b[2J (KeywordProbe): 3 records" in out and "pair\\ud800x" in out and "ok\\x00\\n" in out
    assert "\x00" not in out and "\x1b" not in out
    rc, out, err = cli(capsys, "replay", run_dir, "--speed", "0")
    assert rc == 0 and "kw\\x00\\ud800\\x1b[2J" in out and "\x00" not in out, err
    rc, out, err = cli(capsys, "export", run_dir, "--csv", tmp_path / "csv")
    assert rc == 0, err
    assert os.listdir(tmp_path / "csv") == ["kw____2J.csv"]
    header = (tmp_path / "csv" / "kw____2J.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "step,epoch,time,p_first[pair\\ud800x],p_first[ok\\x00\\n],rank[pair\\ud800x],rank[ok\\x00\\n]"
    rc, out, err = cli(capsys, "summary", run_dir, "--json")
    assert rc == 0 and json.loads(out)["sources"][0]["source"] == "kw\x00\ud800\x1b[2J"


def test_old_shards_without_the_new_fields_still_read(tmp_path):
    """Schema-1 shards (every block carries its describe) written by the previous version."""
    small_run(tmp_path, describe={"type": "Synthetic", "note": "v1"})
    for p in shards(tmp_path):
        rewrite(p, lambda t, m: m.update(schema=1))
    run = open_run(tmp_path)
    assert run.describe("a") == {"type": "Synthetic", "note": "v1"} and run.steps("a").tolist() == list(range(6))
    np.testing.assert_array_equal(run.read("a/k")[1], np.arange(6) * 10)


def test_large_describe_is_stored_once_per_timeline(tmp_path):
    pairs = [{"name": f"p{i}", "context": "x" * 200} for i in range(400)]
    big = {"type": "KeywordProbe", "probe_set": {"pairs": pairs}}
    with RunWriter(tmp_path, flush_every_n=2) as w:
        w.register_source("kw", big)
        for s in range(6):
            w.write(Record(s, "kw", {"p_first": torch.full((400,), 0.5)}))
    sizes = [len(p.read_bytes()) for p in shards(tmp_path)]
    blocks = [read_shard(p)[1]["sources"].get("kw") for p in shards(tmp_path)]
    assert "describe" in blocks[0] and all("describe_seq" in b for b in blocks[1:] if b)
    assert sizes[0] > 80_000 and max(sizes[1:]) < 20_000  # the definition is most of the first header only
    run = open_run(tmp_path)
    assert run.describe("kw") == big and run.steps("kw").tolist() == list(range(6))
    shutil.copy(shards(tmp_path)[0], tmp_path / "copy")
    shards(tmp_path)[0].unlink()  # the shard holding the definition is gone
    with pytest.raises(CorruptShardError, match="its definition is stored in shard seq 0 of timeline 0, which is"):
        open_run(tmp_path)
    run, problems = lenient(tmp_path)
    assert run.describe("kw") == {} and run.steps("kw").tolist() == [2, 3, 4, 5] and "definition" in problems[0]


# 9 -------------------------------------------------------------------------------------------
def test_writer_never_writes_a_header_its_reader_refuses(tmp_path):
    from probes.runlog.shard import DEFAULT_MAX_HEADER_BYTES

    assert DEFAULT_MAX_HEADER_BYTES == fmt.MAX_HEADER_BYTES == 64 * 2**20
    cap = 300_000
    pairs = [{"name": f"p{i}", "context": "c" * 700} for i in range(500)]  # ~370 KB of definition
    w = RunWriter(tmp_path / "big", max_header_bytes=cap)
    with pytest.raises(ValueError, match=r"Source 'kw' needs about \d+ bytes of shard header .* cap of 300000"):
        w.register_source("kw", {"type": "KeywordProbe", "probe_set": {"pairs": pairs}})
    w.close()
    # two definitions that fit alone but not together: the flush is split into two shards
    half = {"type": "Synthetic", "blob": "d" * 160_000}
    with RunWriter(tmp_path / "split", max_header_bytes=cap, flush_every_n=100) as w:
        w.register_source("x", half)
        w.register_source("y", half)
        for s in range(3):
            w.write(Record(s, "x", {"v": torch.tensor(s)}))
            w.write(Record(s, "y", {"v": torch.tensor(-s)}))
    headers = [int.from_bytes(p.read_bytes()[:8], "little") for p in shards(tmp_path / "split")]
    assert len(headers) == 2 and max(headers) <= cap  # x, then y with the final status
    run = open_run(tmp_path / "split", max_header_bytes=cap)
    assert run.steps("x").tolist() == run.steps("y").tolist() == [0, 1, 2] and run.status == "finished"
    assert run.describe("y") == half


def test_the_issue_sized_probe_set_is_refused_at_registration(tmp_path):
    """10,000 pairs with 7,000-character contexts: a 68 MiB header the reader would refuse."""
    pairs = [{"name": f"p{i}", "context": "c" * 7000, "keyword": "k"} for i in range(10_000)]
    w = RunWriter(tmp_path)
    with pytest.raises(ValueError, match="over the .* bytes the header cap of 67108864 leaves"):
        w.register_source("kw", {"type": "KeywordProbe", "probe_set": {"pairs": pairs}})
    w.close()


def test_cli_can_raise_the_header_cap(tmp_path, capsys):
    big = {"type": "Synthetic", "blob": "b" * 70_000}
    with RunWriter(tmp_path, max_header_bytes=8 * 2**20) as w:
        w.register_source("a", big)
        w.write(Record(0, "a", {"v": torch.tensor(1.0)}))
    rc, _, err = cli(capsys, "summary", tmp_path, "--max-header-mib", "0.05")
    assert rc == 1 and "over the cap of 52428 bytes" in one_error_line(err, "summary")
    rc, out, err = cli(capsys, "summary", tmp_path, "--max-header-mib", "1")
    assert rc == 0 and "a (Synthetic): 1 records" in out


def test_unreadable_entry_is_typed(tmp_path, monkeypatch, capsys):
    small_run(tmp_path)
    victim = shards(tmp_path)[0]
    real_open = os.open

    def deny(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(path) == os.fspath(victim):  # as for a file of another user (this suite may run as root)
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CorruptShardError, match=r"it cannot be opened \(Permission denied\)"):
        open_run(tmp_path)
    run, skipped = lenient(tmp_path)
    assert run.steps("a").tolist() == [4, 5] and "Permission denied" in skipped[0]
    rc, _, err = cli(capsys, "replay", tmp_path, "--speed", "0")
    assert rc == 1 and "Permission denied" in one_error_line(err, "replay")


def test_a_shard_swapped_after_validation_is_not_mapped(tmp_path):
    small_run(tmp_path, steps=4, flush_every_n=100)
    run = open_run(tmp_path)
    first = shards(tmp_path)[0]
    (tmp_path / "other").write_bytes(first.read_bytes())
    os.replace(tmp_path / "other", first)  # same bytes, another file
    with pytest.raises(CorruptShardError, match="replaced after it was opened"):
        run.read("a/v")
