"""The on-disk format of a run log: names, metadata keys, dtypes and checksums.

A run directory holds immutable shards named ``shard-{seq:06d}-t{timeline:03d}.safetensors``.
Each is a plain safetensors file whose ``__metadata__`` values are JSON strings (see
``docs/runlog.md``). Tensors of one source are named ``"{source}/{metric}"``, plus the index
tensors ``"{source}/__step__"`` (int64), ``"{source}/__epoch__"`` (int64) and
``"{source}/__time__"`` (float64, seconds since the epoch when the record reached the writer).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

__all__ = [
    "DTYPES",
    "FORMAT_NAME",
    "INDEX_NAMES",
    "SCHEMA_VERSION",
    "canonical_crc",
    "parse_shard_name",
    "shard_name",
]

FORMAT_NAME = "probes.runlog"
SCHEMA_VERSION = 2
"""Version 2 stores a large source ``describe`` (over :data:`DESCRIBE_INLINE_BYTES`) once per
timeline (in the first shard of the timeline that holds the source, and again only when it
changes); later blocks name that shard with ``describe_seq``. Version 1 (every block carries
``describe``) is still read."""

MAX_HEADER_BYTES = 64 * 1024 * 1024
"""Largest safetensors header (JSON, metadata included) that the reader accepts by default and
that the writer ever writes: 64 MiB. One constant for both, so the writer never writes what its
reader refuses."""

DESCRIBE_INLINE_BYTES = 64 * 1024
"""A source definition up to this size (as stored) is written into every shard, so that any shard
reads alone; a larger one is written once per timeline (and again when it changes)."""

MAX_NAME_CHARS = 512
"""Longest source or metric name the writer accepts."""

SHARD_RE = re.compile(r"^shard-(\d{6,})-t(\d{3,})\.safetensors$")
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"

STEP, EPOCH, TIME = "__step__", "__epoch__", "__time__"
INDEX_NAMES = (STEP, EPOCH, TIME)

# Metadata keys (every value is a JSON document serialised to a string).
K_FORMAT = "format"
K_SCHEMA = "schema"
K_SEQ = "seq"
K_TIMELINE = "timeline"
K_PARENT = "parent"
K_FORK = "fork_step"
K_STATUS = "status"
K_CREATED = "created"
K_RUN = "run"
K_SOURCES = "sources"
K_TENSORS = "tensors"
K_STEPS = "steps"
K_CRC = "crc32"
REQUIRED_KEYS = (
    K_FORMAT, K_SCHEMA, K_SEQ, K_TIMELINE, K_PARENT, K_FORK, K_STATUS, K_CREATED, K_RUN, K_SOURCES, K_TENSORS, K_STEPS,
)

STATUSES = ("running", "finished", "failed", "interrupted")

# safetensors dtype -> (numpy storage dtype, torch dtype name). bfloat16 is stored as raw uint16
# words in numpy and widened exactly to float32 by the reader.
DTYPES: dict[str, tuple[str, str]] = {
    "BOOL": ("|b1", "bool"),
    "U8": ("|u1", "uint8"),
    "I8": ("|i1", "int8"),
    "I16": ("<i2", "int16"),
    "U16": ("<u2", "uint16"),
    "I32": ("<i4", "int32"),
    "U32": ("<u4", "uint32"),
    "I64": ("<i8", "int64"),
    "U64": ("<u8", "uint64"),
    "F16": ("<f2", "float16"),
    "BF16": ("<u2", "bfloat16"),
    "F32": ("<f4", "float32"),
    "F64": ("<f8", "float64"),
}
MAX_DIMS = 16


def name_problem(name: object) -> Optional[str]:
    """Why ``name`` cannot be a source or metric name, or None when it can: it must be a
    non-empty string of at most :data:`MAX_NAME_CHARS` printable characters (no control
    characters, no lone surrogates, which cannot be stored as UTF-8)."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"it has {len(name)} characters, more than {MAX_NAME_CHARS}"
    for ch in name:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"it contains the lone surrogate U+{ord(ch):04X}, which cannot be encoded as UTF-8"
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            return f"it contains the control character U+{ord(ch):04X}"
    return None


def shard_name(seq: int, timeline: int) -> str:
    """File name of shard ``seq`` of ``timeline``."""
    return f"shard-{seq:06d}-t{timeline:03d}.safetensors"


def parse_shard_name(name: str) -> Optional[tuple[int, int]]:
    """``(seq, timeline)`` of a shard file name, or None for any other file (temporaries included)."""
    m = SHARD_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def numpy_dtype(st_dtype: str) -> np.dtype:
    """The numpy dtype the reader returns for a safetensors dtype (bfloat16 -> float32)."""
    return np.dtype(np.float32) if st_dtype == "BF16" else np.dtype(DTYPES[st_dtype][0])


def to_public(raw: np.ndarray, st_dtype: str) -> np.ndarray:
    """Convert a raw stored array to what the reader returns (bfloat16 words widened to float32)."""
    if st_dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


def dumps(value: Any) -> str:
    """Compact JSON for metadata values (numpy scalars and tuples accepted)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable: {value!r}")


def canonical_crc(metadata: Mapping[str, str]) -> int:
    """CRC-32 of the metadata (without its ``crc32`` key) in a canonical JSON form."""
    body = {k: v for k, v in metadata.items() if k != K_CRC}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return zlib.crc32(text.encode("ascii"))


def data_crc(buffer: Any) -> int:
    """CRC-32 of a tensor's raw bytes (any buffer-protocol object)."""
    return zlib.crc32(buffer)
