"""Parsing and validating one shard file, and lazy access to its tensors.

The header is parsed here (not by the safetensors library) so that every defect becomes a
:class:`~probes.runlog.errors.CorruptShardError` naming the file, sizes are capped before anything
is allocated, and data is read through a read-only memory map. Nothing is ever unpickled.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from probes.runlog import layout as fmt
from probes.runlog.errors import CorruptShardError, UnsupportedSchemaError
from probes.runlog.files import open_entry

__all__ = ["DEFAULT_MAX_HEADER_BYTES", "Shard", "SourceBlock", "TensorEntry"]

_ITEMSIZE = {k: np.dtype(v[0]).itemsize for k, v in fmt.DTYPES.items()}
_NP_DTYPE = {k: np.dtype(v[0]) for k, v in fmt.DTYPES.items()}

DEFAULT_MAX_HEADER_BYTES = fmt.MAX_HEADER_BYTES
"""Largest safetensors header (JSON, metadata included) the reader accepts: 64 MiB, the cap the
writer writes under."""

MAX_EMPTY_SPREAD = 1 << 24
"""A zero-size dimension cannot hide a huge one: the product of a tensor's non-zero dimensions
may not exceed the data section's size in elements or this many elements, whichever is larger."""


class TensorEntry(NamedTuple):
    """Where one tensor lives in a shard: dtype, shape and byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    crc: int


@dataclass(frozen=True)
class SourceBlock:
    """The records of one source inside a shard: their index arrays and metric names."""

    n: int
    metrics: tuple[str, ...]
    describe: Optional[Mapping[str, Any]]  # None: stored once per timeline, in shard describe_seq
    steps: np.ndarray
    epochs: np.ndarray
    times: np.ndarray
    describe_seq: int = -1  # the shard (same timeline) holding this source's describe


class Shard:
    """A validated shard file. Construct with :meth:`open`.

    Attributes:
        path: the file.
        seq, timeline, parent, fork_step: position in the run (see ``docs/runlog.md``).
        status: ``"running"``, or the writer's final status on the last shard it wrote.
        created: wall-clock time of the flush that wrote it.
        run: the run information dictionary.
        sources: source name -> :class:`SourceBlock`.
        entries: tensor name -> :class:`TensorEntry`.
    """

    def __init__(self) -> None:  # use Shard.open
        self.path = Path()
        self.name = ""
        self.size = 0
        self.data_start = 0
        self.schema = fmt.SCHEMA_VERSION
        self.seq = self.timeline = 0
        self.parent = self.fork_step = -1
        self.status = "running"
        self.created = 0.0
        self.run: dict[str, Any] = {}
        self.sources: dict[str, SourceBlock] = {}
        self.entries: dict[str, TensorEntry] = {}
        self._verified: set[str] = set()
        self.identity = (0, 0)
        self.describes: dict[str, dict[str, Any]] = {}  # resolved by the reader (schema 2 stores them once)

    def __repr__(self) -> str:
        return f"Shard({self.path.name}, records={self.n_records}, status={self.status!r})"

    @property
    def n_records(self) -> int:
        return sum(b.n for b in self.sources.values())

    # ------------------------------------------------------------------ parsing
    @classmethod
    def open(cls, path: os.PathLike[str] | str, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> Shard:
        """Read and validate the header, metadata and index arrays of ``path``.

        Only a regular file that is a direct entry of its directory is opened (never a symlink,
        FIFO, device or directory; see :func:`probes.runlog.files.open_entry`).

        Raises:
            CorruptShardError: the file is truncated, corrupted, not a run-log shard, or cannot
                be read (permission denied, I/O error).
            UnsafeEntryError: the entry is not a regular file (nothing was read from it).
            UnsupportedSchemaError: written by a newer schema version.
            FileNotFoundError: the file vanished.
        """
        self = cls()
        self.path = Path(path)
        self.name = self.path.name
        try:
            fd, st = open_entry(self.path.parent, self.name)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise self._bad(f"it cannot be opened ({e.strerror or e})") from None
        try:
            self.size = st.st_size
            self.identity = (st.st_dev, st.st_ino)
            header = self._read_header(fd, max_header_bytes)
            meta = self._check_metadata(header)
            self._check_entries(header, meta)
            self._read_sources(fd, meta)
        except OSError as e:
            raise self._bad(f"it cannot be read ({e.strerror or e})") from None
        finally:
            os.close(fd)
        return self

    def _bad(self, problem: str) -> CorruptShardError:
        return CorruptShardError(self.path, problem)

    def _pread_exact(self, fd: int, n: int, offset: int) -> bytes:
        buf = os.pread(fd, n, offset)
        while len(buf) < n:
            more = os.pread(fd, n - len(buf), offset + len(buf))
            if not more:
                raise self._bad(f"truncated: wanted {n} bytes at offset {offset}, the file ended after {len(buf)}")
            buf += more
        return buf

    def _read_header(self, fd: int, cap: int) -> dict[str, Any]:
        if self.size < 8:
            raise self._bad(f"the file is {self.size} bytes, shorter than the 8-byte header length (truncated)")
        n = int.from_bytes(self._pread_exact(fd, 8, 0), "little")
        if n > cap:
            raise self._bad(
                f"the header claims {n} bytes, over the cap of {cap} bytes"
                " (pass max_header_bytes=... if a legitimate shard is that large)"
            )
        if n > self.size - 8:
            raise self._bad(f"truncated: the header claims {n} bytes but only {self.size - 8} follow")
        raw = self._pread_exact(fd, n, 8)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise self._bad(f"the header is not valid JSON ({type(e).__name__}: {str(e)[:160]})") from None
        if not isinstance(header, dict):
            raise self._bad(f"the header is a JSON {type(header).__name__}, not an object")
        self.data_start = 8 + n
        return header

    def _check_metadata(self, header: dict[str, Any]) -> dict[str, Any]:
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise self._bad("no string-to-string __metadata__: not a probes run-log shard")
        if meta.get(fmt.K_FORMAT) != json.dumps(fmt.FORMAT_NAME):
            raise self._bad(f"metadata format is {meta.get(fmt.K_FORMAT)!r}, not a probes run-log shard")
        try:
            crc = int(meta[fmt.K_CRC])
        except (KeyError, ValueError):
            raise self._bad("the metadata checksum (crc32) is missing or not an integer") from None
        if crc != fmt.canonical_crc(meta):
            raise self._bad("the metadata checksum does not match (corrupted header)")
        parsed: dict[str, Any] = {}
        for key in fmt.REQUIRED_KEYS:
            if key not in meta:
                raise self._bad(f"metadata key {key!r} is missing")
            try:
                parsed[key] = json.loads(meta[key])
            except (ValueError, RecursionError):
                raise self._bad(f"metadata key {key!r} is not valid JSON") from None
        schema = parsed[fmt.K_SCHEMA]
        if not _is_int(schema) or schema < 1:
            raise self._bad(f"schema version {schema!r} is not a positive integer")
        if schema > fmt.SCHEMA_VERSION:
            raise UnsupportedSchemaError(self.path, schema, fmt.SCHEMA_VERSION)
        self.schema = schema
        if not isinstance(parsed[fmt.K_RUN], dict):
            raise self._bad("metadata 'run' is not a JSON object")
        for key in (fmt.K_SEQ, fmt.K_TIMELINE, fmt.K_PARENT, fmt.K_FORK):
            if not _is_int(parsed[key]):
                raise self._bad(f"metadata {key!r} is {parsed[key]!r}, not an integer")
        self.seq, self.timeline = parsed[fmt.K_SEQ], parsed[fmt.K_TIMELINE]
        self.parent, self.fork_step = parsed[fmt.K_PARENT], parsed[fmt.K_FORK]
        if self.seq < 0 or self.timeline < 0 or not (-1 <= self.parent < self.timeline):
            raise self._bad(f"inconsistent seq/timeline/parent {self.seq}/{self.timeline}/{self.parent}")
        named = fmt.parse_shard_name(self.path.name)
        if named is not None and named != (self.seq, self.timeline):
            raise self._bad(
                f"the file name says seq {named[0]} timeline {named[1]} but the metadata says"
                f" seq {self.seq} timeline {self.timeline}"
            )
        if parsed[fmt.K_STATUS] not in fmt.STATUSES:
            raise self._bad(f"unknown status {parsed[fmt.K_STATUS]!r}")
        self.status = parsed[fmt.K_STATUS]
        if not isinstance(parsed[fmt.K_CREATED], (int, float)) or isinstance(parsed[fmt.K_CREATED], bool):
            raise self._bad("metadata 'created' is not a number")
        if isinstance(parsed[fmt.K_CREATED], int) and abs(parsed[fmt.K_CREATED]) > 2**53:
            raise self._bad(f"metadata 'created' {str(parsed[fmt.K_CREATED])[:40]} is out of range")
        self.created = float(parsed[fmt.K_CREATED])
        for key in (fmt.K_RUN, fmt.K_SOURCES, fmt.K_TENSORS):
            if not isinstance(parsed[key], dict):
                raise self._bad(f"metadata {key!r} is not a JSON object")
        self.run = parsed[fmt.K_RUN]
        return parsed

    def _check_entries(self, header: dict[str, Any], meta: dict[str, Any]) -> None:
        data_len = self.size - self.data_start
        declared = meta[fmt.K_TENSORS]
        if len(header) - 1 != len(declared):
            raise self._bad(f"the header lists {len(header) - 1} tensors but the metadata {len(declared)}")
        for name, info in header.items():
            if name == "__metadata__":
                continue
            spec = declared.get(name)
            if spec is None:
                raise self._bad(f"tensor {name!r} is not in the metadata's tensor list")
            try:
                dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            except (TypeError, KeyError, ValueError):
                raise self._bad(f"tensor {name!r}: malformed header entry {str(info)[:80]}") from None
            itemsize = _ITEMSIZE.get(dtype) if type(dtype) is str else None
            if itemsize is None:
                raise self._bad(f"tensor {name!r}: unsupported dtype {str(dtype)[:20]!r}")
            if type(shape) is not list or len(shape) > fmt.MAX_DIMS:
                raise self._bad(f"tensor {name!r}: invalid shape {str(shape)[:80]}")
            nbytes, spread = itemsize, 1
            for d in shape:
                if type(d) is not int or d < 0:
                    raise self._bad(f"tensor {name!r}: invalid shape {str(shape)[:80]}")
                nbytes *= d
                spread *= max(d, 1)
            if spread > max(data_len // itemsize, MAX_EMPTY_SPREAD):
                raise self._bad(
                    f"tensor {name!r}: shape {str(shape)[:80]} is out of bounds (its non-zero dimensions would"
                    f" hold {spread} elements; the data section holds {data_len} bytes)"
                )
            if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
                raise self._bad(f"tensor {name!r}: invalid data_offsets {str(info['data_offsets'])[:80]}")
            if end > data_len:
                raise self._bad(
                    f"truncated: tensor {name!r} ends at byte {end} of the data section,"
                    f" which has only {data_len} bytes"
                )
            if nbytes != end - begin:
                raise self._bad(f"tensor {name!r}: shape {shape} x {itemsize} bytes does not fill {end - begin} bytes")
            if type(spec) is not list or len(spec) != 3 or spec[:2] != [dtype, shape] or type(spec[2]) is not int:
                raise self._bad(f"tensor {name!r}: header dtype/shape {dtype}{shape} disagree with the metadata")
            self.entries[name] = TensorEntry(dtype, tuple(shape), begin, end, spec[2])
        ranges = sorted((e.begin, e.end, n) for n, e in self.entries.items() if e.end > e.begin)
        for (_, end0, name0), (begin1, _, name1) in itertools.pairwise(ranges):
            if begin1 < end0:
                raise self._bad(f"tensors {name0!r} and {name1!r} overlap in the data section")

    def _read_sources(self, fd: int, meta: dict[str, Any]) -> None:
        sources = meta[fmt.K_SOURCES]
        owned: set[str] = set()
        for source, block in sources.items():
            if not source or "/" in source:
                raise self._bad(f"source name {source[:80]!r} is empty or contains '/'")
            if not isinstance(block, dict) or not _is_int(block.get("n")) or block["n"] < 0:
                raise self._bad(f"source {source[:80]!r}: malformed block")
            n, metrics, describe = block["n"], block.get("metrics"), block.get("describe")
            if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
                raise self._bad(f"source {source[:80]!r}: malformed metric list")
            if len(set(metrics)) != len(metrics) or any(m in fmt.INDEX_NAMES for m in metrics):
                raise self._bad(f"source {source[:80]!r}: repeated or reserved metric names")
            describe_seq = block.get("describe_seq")
            if describe is None:
                if self.schema < 2:
                    describe = {}
                elif not _is_int(describe_seq) or not 0 <= describe_seq < self.seq:
                    raise self._bad(f"source {source[:80]!r}: no describe and no valid describe_seq")
            elif not isinstance(describe, dict):
                raise self._bad(f"source {source[:80]!r}: describe is not an object")
            index = {}
            for name, dtype in ((fmt.STEP, "I64"), (fmt.EPOCH, "I64"), (fmt.TIME, "F64")):
                key = f"{source}/{name}"
                e = self.entries.get(key)
                if e is None or e.dtype != dtype or e.shape != (n,):
                    raise self._bad(f"source {source!r}: index tensor {key!r} is missing or not {dtype}[{n}]")
                index[name] = self._pread(fd, key)
                owned.add(key)
            for m in metrics:
                key = f"{source}/{m}"
                e = self.entries.get(key)
                if e is None or len(e.shape) < 1 or e.shape[0] != n:
                    raise self._bad(f"source {source!r}: metric tensor {key!r} is missing or does not have {n} rows")
                owned.add(key)
            self.sources[source] = SourceBlock(
                n,
                tuple(metrics),
                describe,
                index[fmt.STEP],
                index[fmt.EPOCH],
                index[fmt.TIME],
                describe_seq if describe is None else self.seq,
            )
        stray = set(self.entries) - owned
        if stray:
            raise self._bad(f"tensors {sorted(stray)[:3]} belong to no source")

    def _pread(self, fd: int, name: str) -> np.ndarray:
        e = self.entries[name]
        buf = self._pread_exact(fd, e.end - e.begin, self.data_start + e.begin)
        if fmt.data_crc(buf) != e.crc:
            raise self._bad(f"tensor {name!r}: data checksum mismatch (corrupted data)")
        self._verified.add(name)
        return np.frombuffer(buf, dtype=_NP_DTYPE[e.dtype]).reshape(e.shape)

    # ------------------------------------------------------------------ data
    def open_map(self) -> Optional[np.ndarray]:
        """The data section as a read-only uint8 array over a memory map (None when empty).

        Raises:
            CorruptShardError: the file changed size since it was validated.
        """
        if self.size == self.data_start:
            return None
        try:
            fd, st = open_entry(self.path.parent, self.name)
        except OSError as e:
            raise self._bad(f"it cannot be reopened ({e.strerror or e})") from None
        try:
            if (st.st_dev, st.st_ino) != self.identity:
                raise self._bad("the file was replaced after it was opened")
            if st.st_size != self.size:
                raise self._bad(f"the file changed size from {self.size} to {st.st_size} bytes after it was opened")
            buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return np.frombuffer(buf, dtype=np.uint8, offset=self.data_start)

    def raw(self, name: str, data: Optional[np.ndarray]) -> np.ndarray:
        """Tensor ``name`` as a read-only view of ``data`` (from :meth:`open_map`) in its storage
        dtype; its checksum is verified the first time.

        Raises:
            CorruptShardError: the tensor's bytes do not match their checksum.
        """
        e = self.entries[name]
        if e.end == e.begin or data is None:
            return np.empty(e.shape, dtype=_NP_DTYPE[e.dtype])
        chunk = data[e.begin : e.end]
        if name not in self._verified:
            if fmt.data_crc(chunk) != e.crc:
                raise self._bad(f"tensor {name!r}: data checksum mismatch (corrupted data)")
            self._verified.add(name)
        return chunk.view(_NP_DTYPE[e.dtype]).reshape(e.shape)

    def verify(self) -> None:
        """Check every tensor's checksum now (lenient readers do this before using a shard)."""
        data = self.open_map()
        for name in self.entries:
            self.raw(name, data)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
