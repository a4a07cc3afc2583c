"""Typed errors and warnings of the run log. Every error names the file (or directory) at fault."""

from __future__ import annotations

import os
from typing import Union

__all__ = ["CorruptShardError", "RunLogError", "RunLogWarning", "UnsupportedSchemaError"]

PathLike = Union[str, "os.PathLike[str]"]


class RunLogError(Exception):
    """Base class of every run-log error: bad arguments, a locked or foreign directory, a schema
    mismatch between shards, reading a closed writer."""


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
