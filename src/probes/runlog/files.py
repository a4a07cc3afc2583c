"""Durable file operations of the run log: atomic shard writes and the writer's directory lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from probes.runlog import format as fmt
from probes.runlog.errors import RunLogError

try:  # POSIX advisory locks; without them (Windows) a second writer is not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["DirLock", "atomic_write", "fsync_dir"]


def atomic_write(dirpath: Path, name: str, data: bytes) -> None:
    """Write ``data`` to ``dirpath/name`` so that the name only ever refers to the complete file."""
    final = dirpath / name
    if final.exists():
        raise RunLogError(f"Refusing to overwrite existing shard {final}: shards are immutable.")
    tmp = dirpath / f"{fmt.TMP_PREFIX}{name}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dirpath)


def fsync_dir(dirpath: Path) -> None:
    try:
        fd = os.open(dirpath, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class DirLock:
    """An exclusive advisory lock on ``dirpath/.lock``, released on close or process death."""

    def __init__(self, dirpath: Path) -> None:
        self.file: Any = open(dirpath / fmt.LOCK_NAME, "a+")
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise RunLogError(
                f"{dirpath} is being written by another RunWriter (pid {holder}). Close that writer"
                " first, or write this run to a different directory."
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if self.file.closed:
            return
        if fcntl is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
        self.file.close()
