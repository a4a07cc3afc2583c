"""File operations of the run log: safe opening for readers, atomic shard writes, the writer's lock.

Reading never follows anything: :func:`open_entry` opens only a regular file that is a direct
entry of the run directory (``lstat`` first, ``O_NOFOLLOW | O_NONBLOCK``, ``S_ISREG`` checked on
the opened descriptor, and the descriptor must be the very file that was ``lstat``-ed), so a
symlink, FIFO, socket, device or directory named like a shard is refused without being opened
for reading or blocking on.

The writer's lock is a POSIX record lock (``fcntl.lockf``): the kernel releases it when the
process that took it dies, and, unlike ``flock``, a child created by ``fork`` does not inherit it,
so a helper process forked by the training process cannot keep a dead writer's directory locked.
Within one process an in-process registry refuses a second writer on the same directory.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path
from typing import Optional

from probes.runlog import layout as fmt
from probes.runlog.errors import RunLogError, UnsafeEntryError

try:  # POSIX advisory locks; without them (Windows) a second writer is not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["DirLock", "atomic_write", "entry_kind", "fsync_dir", "open_entry"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fsync(fd: int) -> None:
    os.fsync(fd)  # looked up at call time, so that fault-injection tests can make the disk fail


def entry_kind(mode: int) -> str:
    """``"regular file"``, ``"symbolic link"``, ``"FIFO"``... for a ``st_mode``."""
    for test, name in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def open_entry(dirpath: Path, name: str) -> tuple[int, os.stat_result]:
    """Open ``dirpath/name`` read-only if, and only if, it is a regular file in that directory.

    Returns:
        ``(fd, fstat of fd)``; the caller closes ``fd``.

    Raises:
        FileNotFoundError: the entry vanished (a concurrent writer or cleaner).
        UnsafeEntryError: it is a symlink, directory, FIFO, socket or device, or it changed
            between ``lstat`` and ``open`` (nothing was read from it).
        CorruptShardError-free OSError: permission denied and similar (the caller types it).
    """
    path = dirpath / name
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise UnsafeEntryError(path, f"{name!r} is not a plain file name inside the run directory")
    before = os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        raise UnsafeEntryError(path, f"it is a {entry_kind(before.st_mode)}, not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink after the lstat
            raise UnsafeEntryError(path, "it became a symbolic link while being opened") from None
        raise
    try:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeEntryError(path, "it was replaced while being opened (not the file that was checked)")
    except BaseException:
        os.close(fd)
        raise
    return fd, after


def atomic_write(dirpath: Path, name: str, data: bytes) -> None:
    """Write ``data`` to ``dirpath/name`` so that the name only ever refers to the complete file.

    Raises:
        RunLogError: a shard of that name already exists (shards are immutable).
        OSError: the disk refused (ENOSPC, EIO...); nothing is left under the final name.
    """
    final = dirpath / name
    if os.path.lexists(final):
        raise RunLogError(f"Refusing to overwrite existing shard {final}: shards are immutable.")
    tmp = dirpath / f"{fmt.TMP_PREFIX}{name}.{os.getpid()}.{threading.get_ident()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            _fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - best effort
            pass
        raise
    fsync_dir(dirpath)


def fsync_dir(dirpath: Path) -> None:
    try:
        fd = os.open(dirpath, os.O_RDONLY | _CLOEXEC)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        _fsync(fd)
    except OSError:  # the rename is done; a failed directory sync is retried by the next shard's
        pass
    finally:
        os.close(fd)


_HELD: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) of locked directories -> pid that locked them
_HELD_GUARD = threading.Lock()


class DirLock:
    """An exclusive advisory lock on ``dirpath/.lock``: one writer per directory.

    POSIX record locks are released by the kernel when the holding process dies and are not
    inherited by forked children; the pid written into the file is for messages only.

    Raises:
        RunLogError: another writer (in this process or another) holds the directory, or
            ``.lock`` is not a regular file.
    """

    def __init__(self, dirpath: Path) -> None:
        self.dirpath = dirpath
        self.fd: Optional[int] = None
        st = os.stat(dirpath)
        self.key = (st.st_dev, st.st_ino)
        with _HELD_GUARD:
            if _HELD.get(self.key) == os.getpid():  # an entry copied into a forked child is not ours
                raise RunLogError(
                    f"{dirpath} is being written by another RunWriter (pid {os.getpid()}), in this process."
                    " Close that writer first, or write this run to a different directory."
                )
            _HELD[self.key] = os.getpid()
        try:
            self._acquire()
        except BaseException:
            with _HELD_GUARD:
                _HELD.pop(self.key, None)
            raise

    def _acquire(self) -> None:
        path = self.dirpath / fmt.LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o644)
        except OSError as e:
            raise RunLogError(
                f"Cannot open the lock file {path} ({e.strerror or e}); it must be a regular file."
                " Remove it if it is a link or a directory, or use a different run directory."
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunLogError(f"The lock file {path} is not a regular file; remove it or use a different directory.")
        if fcntl is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_small(fd) or "unknown"
                os.close(fd)
                raise RunLogError(
                    f"{self.dirpath} is being written by another RunWriter (pid {holder}). Close that writer"
                    " first, or write this run to a different directory."
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.close(fd)  # closing the descriptor drops this process's POSIX lock
        finally:
            with _HELD_GUARD:
                _HELD.pop(self.key, None)


def _read_small(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:  # pragma: no cover
        return ""
