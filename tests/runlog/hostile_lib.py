"""Tools for attacking a run directory: rewriting a shard's header with a valid checksum, running
a read with a deadline (a FIFO makes a naive reader block forever), and recording every file the
reader opens (through Python's audit hooks) to show that nothing outside the run dir is read."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from probes.core.records import Record
from probes.runlog import RunWriter
from probes.runlog import layout as fmt


def read_shard(path: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """``(tensor table, parsed metadata, data section)`` of a shard."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = {k: json.loads(v) for k, v in header.pop("__metadata__").items()}
    return header, meta, raw[8 + n :]


def write_shard(path: Path, table: dict[str, Any], meta: dict[str, Any], data: bytes) -> None:
    """Write a shard whose metadata checksum is valid for whatever ``table``/``meta`` hold."""
    strings = {k: json.dumps(v, separators=(",", ":"), ensure_ascii=True) for k, v in meta.items() if k != fmt.K_CRC}
    strings[fmt.K_CRC] = str(fmt.canonical_crc(strings))
    text = json.dumps({"__metadata__": strings, **table}, ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def rewrite(path: Path, mutate: Callable[[dict[str, Any], dict[str, Any]], Any], out: Path | None = None) -> None:
    """Apply ``mutate(table, meta)`` to a shard's header and write it back with a valid checksum."""
    table, meta, data = read_shard(path)
    mutate(table, meta)
    write_shard(out or path, table, meta, data)


def set_shape(table: dict[str, Any], meta: dict[str, Any], key: str, shape: list[int], crc: int | None = None) -> None:
    """Give tensor ``key`` a new shape (an empty byte range when it has no elements)."""
    begin = table[key]["data_offsets"][0]
    n = 1
    for d in shape:
        n *= d
    if n == 0:
        table[key]["data_offsets"] = [begin, begin]
        crc = 0
    table[key]["shape"] = shape
    meta["tensors"][key][1] = shape
    if crc is not None:
        meta["tensors"][key][2] = crc


def rename_source(table: dict[str, Any], meta: dict[str, Any], old: str, new: str) -> None:
    for key in [k for k in table if k.startswith(old + "/")]:
        nk = new + key[len(old) :]
        table[nk] = table.pop(key)
        meta["tensors"][nk] = meta["tensors"].pop(key)
    meta["sources"][new] = meta["sources"].pop(old)


def small_run(path: Path, *, steps: int = 6, flush_every_n: int = 4, describe: dict[str, Any] | None = None) -> None:
    """A finished log of one source ``a`` (metrics ``v`` float32[3] and ``k`` int64[])."""
    with RunWriter(path, flush_every_n=flush_every_n) as w:
        w.register_source("a", describe or {"type": "Synthetic"})
        for s in range(steps):
            w.write(Record(s, "a", {"v": torch.full((3,), float(s)), "k": torch.tensor(s * 10)}))


def shards(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if fmt.parse_shard_name(p.name) is not None and p.is_file())


class Deadline(AssertionError):
    pass


def bounded(fn: Callable[[], Any], timeout: float = 10.0, *, fifos: tuple[Path, ...] = ()) -> Any:
    """Run ``fn`` in a thread and return its result (or raise its exception); fail with
    :class:`Deadline` if it does not finish in ``timeout`` seconds. A thread blocked opening one of
    ``fifos`` is released by opening the FIFO for writing, so no thread is left hanging."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for fifo in fifos:  # unblock a reader stuck in open() on the FIFO
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        t.join(5)
        raise Deadline(f"did not finish within {timeout} s (a blocking open of a FIFO or a hang)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


_OPENED: list[list[str]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED[-1].append(os.fsdecode(args[0]))


_installed = False


@contextmanager
def opened_paths() -> Iterator[list[str]]:
    """Every path opened (``open``/``os.open`` audit events) inside the block, by any thread."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    record: list[str] = []
    _OPENED.append(record)
    try:
        yield record
    finally:
        _OPENED.remove(record)


def assert_reads_stay_inside(paths: list[str], run_dir: Path) -> None:
    """Every opened path under ``run_dir`` is a regular, non-link file directly inside it, or the
    directory itself; nothing else was opened."""
    root = os.path.realpath(run_dir)
    for p in paths:
        if os.path.realpath(os.path.dirname(os.path.abspath(p))) == root:
            st = os.lstat(p) if os.path.lexists(p) else None
            assert st is None or stat.S_ISREG(st.st_mode), f"opened {p!r}, which is not a regular file"
        elif os.path.realpath(p) == root:
            continue
        elif "site-packages" in p or p.endswith((".py", ".pyc", ".so")) or "/proc/" in p or "/dev/" in p:
            continue  # imports and the interpreter's own files
        else:
            raise AssertionError(f"the reader opened {p!r}, outside the run directory {run_dir}")
