"""Typed errors and warnings of the run log. Every error names the file (or directory) at fault."""

from __future__ import annotations

import os
from typing import Union

__all__ = [
    "CorruptShardError",
    "ExistingRunError",
    "InvalidRecordError",
    "RecordsLostError",
    "RunLogError",
    "RunLogWarning",
    "UnsafeEntryError",
    "UnsupportedSchemaError",
]

PathLike = Union[str, "os.PathLike[str]"]


class RunLogError(Exception):
    """Base class of every run-log error: bad arguments, a locked or foreign directory, a schema
    mismatch between shards, reading a closed writer."""


class ExistingRunError(RunLogError):
    """A fresh (not branching) writer was pointed at a directory that already holds a run log."""


class CorruptShardError(RunLogError):
    """A shard is truncated, corrupted or not a run-log shard.

    Attributes:
        path: the shard file.
        problem: what is wrong with it, in words.
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(
            f"Corrupt run-log shard {self.path}: {problem}. Open the run with strict=False"
            " (CLI: --lenient) to skip this shard and read the rest."
        )


class UnsafeEntryError(CorruptShardError):
    """A directory entry named like a shard is not a regular file inside the run directory (a
    symlink, directory, FIFO, socket or device), or changed while being opened. It was not read."""


class InvalidRecordError(RunLogError, ValueError):
    """A record refused by :meth:`~probes.runlog.RunWriter.write` before it was buffered (bad
    step, epoch, source or metric name, tensor type, dtype, device, or a shape that differs from
    the source's earlier records). Nothing else is affected. Also a ``ValueError``."""


class RecordsLostError(RunLogError):
    """Records could not be written (the disk stayed unwritable past the retries, or the memory
    bound for held records was exceeded) and were finally dropped.

    Attributes:
        n_records: how many records were lost.
        steps: ``(first, last)`` step of the lost records, or None.
    """

    def __init__(self, message: str, n_records: int, steps: tuple[int, int] | None) -> None:
        super().__init__(message)
        self.n_records = n_records
        self.steps = steps


class UnsupportedSchemaError(RunLogError):
    """A shard was written by a newer schema version than this library reads.

    Attributes:
        path: the shard file.
        version: the schema version found in it.
    """

    def __init__(self, path: PathLike, version: int, supported: int) -> None:
        self.path = os.fspath(path)
        self.version = version
        super().__init__(
            f"Run-log shard {self.path} has schema version {version}, newer than the {supported} this"
            " version of probes reads. Upgrade probes (pip install -U probes) to read it."
        )


class RunLogWarning(UserWarning):
    """Issued in lenient mode for every shard that is skipped, and for recoverable oddities."""
