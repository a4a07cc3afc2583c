"""The run-log writer: validates and buffers records, writes them as immutable, atomically renamed shards.

A record is validated completely at :meth:`RunWriter.write` and refused alone when bad. A flush
stacks each metric of each source along a new leading step axis on the records' device, moves
every stacked tensor to the host in one transfer, and writes one safetensors file: first under a
hidden temporary name, then ``fsync``, ``os.replace`` to the final name and ``fsync`` of the
directory. A crash (even SIGKILL) therefore loses at most the records not yet flushed and never
leaves a partial shard under a shard name. Shards are never rewritten or deleted.

A flush that fails with an I/O error (disk full, EIO...) keeps its records: it is retried with
backoff, then held in memory (up to ``max_held_bytes``) and retried at later flushes while
training goes on; see :mod:`probes.runlog.faults`.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from probes.core.records import Record
from probes.runlog import layout as fmt
from probes.runlog.encode import Block, Job, header_estimate, json_size
from probes.runlog.errors import ExistingRunError, RunLogError
from probes.runlog.faults import ON_ERROR, Outbox
from probes.runlog.files import DirLock
from probes.runlog.lineage import Branch
from probes.runlog.validate import SourceSchema, check_source_name, first_record, next_record

__all__ = ["RunWriter", "ShardInfo"]

DEFAULT_MAX_HELD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ShardInfo:
    """What one flush wrote (handed to ``on_flush``).

    Attributes:
        path: the shard file.
        seq: its number in the run directory.
        timeline: the timeline it belongs to.
        n_records: records in it (0 for a marker shard).
        step_min, step_max: its step range (-1 when empty).
        status: ``"running"``, or the final status on the last shard of a session.
    """

    path: Path
    seq: int
    timeline: int
    n_records: int
    step_min: int
    step_max: int
    status: str


class RunWriter:
    """Writes probe records to a run directory as numbered safetensors shards.

    It is a :class:`~probes.core.records.RecordSink`: probes call :meth:`register_source` once and
    :meth:`write` per record. Records are validated at :meth:`write` (a bad one is refused with
    :class:`~probes.runlog.errors.InvalidRecordError`, a ``ValueError``, and affects nothing else),
    buffered, and flushed as a new shard every ``flush_every_n`` records or ``flush_every_s``
    seconds (checked on each write and by :meth:`maybe_flush`), on :meth:`flush` and on
    :meth:`close`. One process at a time may write a directory (a POSIX lock on ``.lock``, not
    inherited by forked children, enforces it).

    I/O faults never stop the caller by default: a failed shard write is retried ``retries``
    times with exponential backoff, then held in memory (at most ``max_held_bytes``; beyond that
    the oldest held records are dropped) with a :class:`~probes.runlog.RunLogWarning` saying how
    much is at risk, and retried at later flushes. :meth:`close` makes a last attempt, writes the
    final status, and raises :class:`~probes.runlog.errors.RecordsLostError` if records were
    finally lost. ``on_error="raise"`` raises a :class:`RunLogError` as soon as a write fails
    after its retries instead (the records stay held for a later flush).

    Args:
        path: the run directory; created if missing. It must hold no shards unless ``branch``
            is given.
        branch: attach to an existing log as a new timeline (see :class:`Branch`); records of
            ``branch.parent`` after ``branch.fork_step`` are superseded for readers.
        flush_every_n: flush after this many buffered records (all sources together).
        flush_every_s: flush when the oldest buffered record is this old, in seconds (checked at
            :meth:`write`), or at :meth:`maybe_flush` when the last flush is this long ago (so after
            a quiet spell a training loop's records land at its next check, and time-triggered
            shards are at most one per ``flush_every_s``); None to flush on count only.
        run_info: JSON-serialisable run information stored in every shard (merged over host,
            pid, versions and start time).
        background: serialise and write shards on a background thread; the caller only stacks
            tensors. :meth:`flush` still waits unless ``wait=False``.
        max_pending: with ``background``, the most flushes queued before :meth:`write` blocks.
        on_flush: called with a :class:`ShardInfo` after each shard is durably on disk (on the
            background thread when ``background``).
        on_error: ``"hold"`` (default: keep going, report losses at close) or ``"raise"``.
        retries: extra attempts of a failed shard write, with backoff ``retry_backoff_s * 4**i``.
        retry_backoff_s: first backoff, in seconds.
        max_held_bytes: most bytes of records held in memory while the disk is unwritable.
        max_header_bytes: the header cap the shards are written under (the reader's default is
            the same :data:`probes.runlog.layout.MAX_HEADER_BYTES`; raise both together).

    Raises:
        ValueError: an invalid argument (named in the message).
        RunLogError: ``path`` is a file, holds shards and no ``branch`` was given, or another
            writer holds its lock.

    Example::

        with RunWriter("runs/exp1") as w:
            w.register_source("loss", {"type": "custom"})
            for step in range(100):
                w.write(Record(step, "loss", {"value": torch.tensor(1.0 / (step + 1))}))
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        branch: Optional[Branch] = None,
        flush_every_n: int = 4096,
        flush_every_s: Optional[float] = 1.0,
        run_info: Optional[Mapping[str, Any]] = None,
        background: bool = False,
        max_pending: int = 2,
        on_flush: Optional[Callable[[ShardInfo], None]] = None,
        on_error: str = "hold",
        retries: int = 3,
        retry_backoff_s: float = 0.05,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        max_header_bytes: int = fmt.MAX_HEADER_BYTES,
    ) -> None:
        _check_int_arg("flush_every_n", flush_every_n, 1)
        if flush_every_s is not None and (
            not isinstance(flush_every_s, (int, float)) or isinstance(flush_every_s, bool) or not flush_every_s > 0
        ):
            raise ValueError(
                f"Expected `flush_every_s` to be a positive number of seconds or None, got {flush_every_s!r}."
            )
        _check_int_arg("max_pending", max_pending, 1)
        _check_int_arg("retries", retries, 0)
        _check_int_arg("max_held_bytes", max_held_bytes, 0)
        _check_int_arg("max_header_bytes", max_header_bytes, 1024)
        backoff_ok = isinstance(retry_backoff_s, (int, float)) and not isinstance(retry_backoff_s, bool)
        if not backoff_ok or not 0 <= retry_backoff_s <= 60:
            raise ValueError(
                f"Expected `retry_backoff_s` to be a number of seconds in [0, 60], got {retry_backoff_s!r}."
            )
        if on_error not in ON_ERROR:
            raise ValueError(f"Expected `on_error` to be one of {ON_ERROR}, got {on_error!r}.")
        if branch is not None and not isinstance(branch, Branch):
            raise ValueError(f"Expected `branch` to be a probes.runlog.Branch or None, got {branch!r}.")
        if on_flush is not None and not callable(on_flush):
            raise ValueError(f"Expected `on_flush` to be callable, got {on_flush!r}.")
        self.run_info = _default_run_info()
        if run_info is not None:
            if not isinstance(run_info, Mapping):
                raise ValueError(f"Expected `run_info` to be a mapping, got {type(run_info).__name__}.")
            self.run_info.update(_json_roundtrip(run_info, "run_info"))
        self.max_header_bytes = max_header_bytes
        self._run_info_bytes = len(json.dumps(fmt.dumps(self.run_info)))
        if self._run_info_bytes + 4096 > max_header_bytes:
            raise ValueError(
                f"`run_info` takes {self._run_info_bytes} bytes in every shard header, over the header cap of"
                f" {max_header_bytes} bytes. Store large configuration in a file and put its path in run_info."
            )
        self.flush_every_n = flush_every_n
        self.flush_every_s = None if flush_every_s is None else float(flush_every_s)
        self.background = bool(background)
        self.max_pending = max_pending
        self.on_flush = on_flush
        self.on_error = on_error

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunLogError(f"Run-log path {self.path} exists and is not a directory. Pass a directory path.")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock(self.path)
        try:
            entries = os.listdir(self.path)
            existing = [p for p in (fmt.parse_shard_name(n) for n in entries) if p is not None]
            for name in entries:
                if name.startswith(fmt.TMP_PREFIX):  # left by a crashed writer; never visible to readers
                    try:
                        os.unlink(self.path / name)  # removes a link itself, never its target
                    except (IsADirectoryError, PermissionError, FileNotFoundError, OSError):
                        pass
            if existing and branch is None:
                raise ExistingRunError(
                    f"{self.path} already holds a run log ({len(existing)} shards). To continue it pass"
                    " branch=open_run(path).tip() (or the Branch of the checkpoint you resume from);"
                    " to start a new run use a new directory."
                )
            max_timeline = max((t for _, t in existing), default=-1)
            self._next_seq = max((s for s, _ in existing), default=-1) + 1
            if branch is None:
                self.timeline, self.parent, self.fork_step = 0, -1, -1
            else:
                self.timeline = max(max_timeline, branch.parent) + 1
                self.parent, self.fork_step = branch.parent, branch.fork_step
        except BaseException:
            self._lock.release()
            raise

        self._describes: dict[str, dict[str, Any]] = {}
        self._describe_inline: dict[str, bool] = {}  # small definitions go into every shard
        self._describe_version: dict[str, int] = {}
        self._describe_durable: dict[str, tuple[int, int]] = {}  # source -> (seq holding it, version)
        self._schemas: dict[str, SourceSchema] = {}
        self._header_share: dict[str, int] = {}
        # per source: (step, epoch, rows (one tensor per metric group), time)
        self._buffers: dict[str, list[tuple[int, int, list[torch.Tensor], float]]] = {}
        self._n_buffered = 0
        self._oldest: Optional[float] = None
        self._last_flush = time.monotonic()  # of the last flush that took records (or the writer's start)
        self._last_step = self.fork_step if branch is not None else -1
        self.n_flushed_records = 0
        self.n_shards = 0
        self.closed = False
        self._guard = threading.Lock()
        self._outbox = Outbox(
            self._write_job,
            path=self.path,
            retries=retries,
            backoff_s=float(retry_backoff_s),
            max_held_bytes=max_held_bytes,
            raise_at_once=on_error == "raise",
            on_written=self._call_on_flush,
        )
        self._queue: Optional[queue.Queue[Optional[list[Job]]]] = None
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        _OPEN_WRITERS.add(self)
        if branch is not None:  # make the supersede visible to readers right away
            try:
                self._submit(self._take_jobs("running"), wait=True)
            except BaseException:
                self.closed = True
                self._lock.release()
                _OPEN_WRITERS.discard(self)
                raise

    def __repr__(self) -> str:
        return (
            f"RunWriter({str(self.path)!r}, timeline={self.timeline}, next_seq={self._next_seq}, closed={self.closed})"
        )

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("finished")
        else:
            status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
            try:
                self.close(status)
            except RunLogError:  # never mask the error that ended the block
                pass

    # ------------------------------------------------------------------ state
    @property
    def last_step(self) -> int:
        """Largest step received (the fork step of a branched writer before any record; else -1)."""
        return self._last_step

    @property
    def next_seq(self) -> int:
        """Number the next shard will get."""
        return self._next_seq

    @property
    def n_buffered(self) -> int:
        """Records received but not yet handed to a flush."""
        return self._n_buffered

    @property
    def n_held(self) -> int:
        """Records whose shard write failed and that are held in memory for a retry."""
        return self._outbox.n_held_records

    @property
    def n_lost(self) -> int:
        """Records finally lost to I/O faults (reported by :meth:`close`)."""
        return self._outbox.lost_records

    # ------------------------------------------------------------------ sink protocol
    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        """Declare ``source`` and its JSON-serialisable definition (stored once per timeline, and
        again whenever it changes).

        Raises:
            ValueError: ``source`` is not a non-empty printable string without '/', ``describe``
                is not JSON-serialisable, or it is too large for a shard header.
        """
        check_source_name(source)
        if not isinstance(describe, Mapping):
            raise ValueError(
                f"Expected `describe` of source {source!r} to be a mapping, got {type(describe).__name__}."
            )
        value = _json_roundtrip(describe, f"describe() of source {source!r}")
        names = self._schemas[source].names if source in self._schemas else ()
        share = self._check_header_share(source, names, value)
        if source in self._schemas:
            self._header_share[source] = share
        if self._describes.get(source) != value:
            self._describes[source] = value
            self._describe_version[source] = self._describe_version.get(source, 0) + 1
            self._describe_inline[source] = json_size(value) <= fmt.DESCRIBE_INLINE_BYTES

    def _check_header_share(self, source: str, names: tuple[str, ...], describe: Mapping[str, Any]) -> int:
        share = header_estimate(source, names, describe)
        room = self.max_header_bytes - self._run_info_bytes - 4096
        if share > room:
            raise ValueError(
                f"Source {source!r} needs about {share} bytes of shard header (its describe() and metric names),"
                f" over the {room} bytes the header cap of {self.max_header_bytes} leaves. Shorten the probe's"
                " definition (fewer or shorter contexts/pairs), split the probe into several sources, or raise"
                " the cap for writer and readers together (RunWriter/RunLog max_header_bytes=...,"
                " open_run(max_header_bytes=...), probes ... --max-header-mib N)."
            )
        return share

    def write(self, record: Record) -> None:
        """Validate and buffer one record; flush when a threshold is reached.

        Raises:
            InvalidRecordError: (a ``ValueError`` and a ``RunLogError``) a bad record: step or
                epoch not an int in range, bad source or metric name, a value that is not a
                storable tensor (dtype, layout, meta device), or metrics whose names, dtypes,
                shapes or devices differ from the earlier records of its source. It is not
                buffered; nothing else is affected.
            RunLogError: the writer is closed; with ``on_error="raise"``, a shard write failed.
        """
        if self.closed:
            raise RunLogError(f"RunWriter({self.path}) is closed; open a new writer to write more records.")
        source = getattr(record, "source", None)
        schema = self._schemas.get(source) if isinstance(source, str) else None
        if schema is None:
            source, step, epoch, rows, schema = first_record(
                record, self._describes.get(source, {"source": source}) if isinstance(source, str) else {}
            )
            describe = self._describes.get(source, {"source": source})
            self._header_share[source] = self._check_header_share(source, schema.names, describe)
            if source not in self._describes:
                self._describes[source] = describe
                self._describe_version[source] = 1
                self._describe_inline[source] = True
            self._schemas[source] = schema
        else:
            step, epoch, rows = next_record(record, schema)
        now = time.time()
        buf = self._buffers.get(source)
        if buf is None:
            buf = self._buffers[source] = []
        buf.append((step, epoch, rows, now))
        self._n_buffered += 1
        if step > self._last_step:
            self._last_step = step
        if self._oldest is None:
            self._oldest = time.monotonic()
        if self._n_buffered >= self.flush_every_n or self._due():
            self.flush(wait=False)

    def _due(self) -> bool:
        return (
            self.flush_every_s is not None
            and self._oldest is not None
            and time.monotonic() - self._oldest >= self.flush_every_s
        )

    def maybe_flush(self) -> bool:
        """Flush (without waiting) buffered records if the last flush is ``flush_every_s`` old (a
        record never waits longer than that plus the time to this call), or retry held shards whose
        retry interval has passed; returns whether it did."""
        quiet = self.flush_every_s is not None and time.monotonic() - self._last_flush >= self.flush_every_s
        if self.closed or not ((self._n_buffered and quiet) or self._outbox.retry_due):
            return False
        self.flush(wait=False)
        return True

    def flush(self, *, wait: bool = True) -> None:
        """Write the buffered records as one shard (several if their headers need it).

        Args:
            wait: block until every pending shard is written or held (always true without
                ``background``).

        Raises:
            RunLogError: with ``on_error="raise"``, a shard could not be written after its retries
                (its records stay held for the next flush). Otherwise failures are held and
                reported at :meth:`close`.
        """
        if self.closed:
            return
        self._check_process()
        if self._n_buffered:
            self._submit(self._take_jobs("running"), wait=wait)
        elif self._outbox.retry_due:
            self._submit([], wait=wait)  # no new records: retry the held ones
        elif wait:
            self._drain()
        self._outbox.raise_pending()

    def close(self, status: str = "finished") -> None:
        """Flush, write held records if the disk allows, mark the run's status in a last shard,
        stop the background thread and release the lock.

        Args:
            status: ``"finished"``, ``"failed"`` or ``"interrupted"``; readers and ``probes watch``
                report it.

        Raises:
            ValueError: an unknown status.
            RecordsLostError: records could not be written and were lost (how many, which steps).
        """
        if status not in fmt.STATUSES:
            raise ValueError(f"Expected `status` to be one of {fmt.STATUSES}, got {status!r}.")
        if self.closed:
            return
        self._check_process()
        try:
            self._submit(self._take_jobs(status), wait=True)
        finally:
            self.closed = True
            self._stop_worker()
            try:
                self._outbox.finish(self._marker(status))
            finally:
                self._lock.release()
                _OPEN_WRITERS.discard(self)
        self._outbox.raise_if_lost()

    def _marker(self, status: str) -> Callable[[], Job]:
        def make() -> Job:
            seq = self._next_seq
            self._next_seq += 1
            return Job(seq, {}, {}, {}, {}, status)

        return make

    # ------------------------------------------------------------------ flushing
    def _take_jobs(self, status: str) -> list[Job]:
        """Stack the buffer on its device (caller thread) and reserve shard numbers: one job, or
        several when the sources' definitions would not fit one header under the cap."""
        blocks: dict[str, Block] = {}
        for source, buf in self._buffers.items():
            if not buf:
                continue
            schema = self._schemas[source]
            names = schema.names
            # one stack over records per group (write() stacked each record's group into a row)
            groups = [(g[0], torch.stack([row[k] for _, _, row, _ in buf])) for k, g in enumerate(schema.groups)]
            blocks[source] = Block(
                steps=torch.tensor([s for s, _, _, _ in buf], dtype=torch.int64),
                epochs=torch.tensor([e for _, e, _, _ in buf], dtype=torch.int64),
                times=torch.tensor([t for _, _, _, t in buf], dtype=torch.float64),
                names=names,
                groups=groups,
            )
        self._buffers = {s: [] for s in self._buffers}
        self._n_buffered = 0
        self._oldest = None
        self._last_flush = time.monotonic()
        room = self.max_header_bytes - self._run_info_bytes - 4096
        parts: list[dict[str, Block]] = [{}]
        used = 0
        with self._guard:
            durable = dict(self._describe_durable)
        for source, blk in blocks.items():
            version = self._describe_version[source]
            stored = durable.get(source)
            inline = self._describe_inline[source]
            share = self._header_share[source] if inline or stored is None or stored[1] != version else 0
            share = share or header_estimate(source, blk.names, None)
            if parts[-1] and used + share > room:
                parts.append({})
                used = 0
            parts[-1][source] = blk
            used += share
        jobs = []
        for k, part in enumerate(parts):
            describes: dict[str, Optional[Mapping[str, Any]]] = {}
            describe_seq: dict[str, int] = {}
            for source in part:
                stored = durable.get(source)
                inline = self._describe_inline[source]
                if not inline and stored is not None and stored[1] == self._describe_version[source]:
                    describes[source], describe_seq[source] = None, stored[0]
                else:
                    describes[source] = self._describes[source]
            n = sum(len(b.steps) for b in part.values())
            steps = [int(b.steps.min()) for b in part.values() if len(b.steps)]
            high = [int(b.steps.max()) for b in part.values() if len(b.steps)]
            job = Job(
                self._next_seq,
                part,
                describes,
                describe_seq,
                {s: self._describe_version[s] for s in part},
                status if k == len(parts) - 1 else "running",
                n_records=n,
                step_range=(min(steps), max(high)) if steps else None,
            )
            self._next_seq += 1
            jobs.append(job)
        return jobs

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise RunLogError(
                f"RunWriter({self.path}) was opened by process {self._pid}; a forked child (pid {os.getpid()})"
                " must not write to it. Open a writer on another directory in the child."
            )

    def _submit(self, jobs: list[Job], *, wait: bool) -> None:
        self._check_process()
        if not self.background:
            self._outbox.send(jobs)
            return
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self.max_pending)
            self._thread = threading.Thread(target=self._worker, name=f"probes-runlog:{self.path.name}", daemon=True)
            self._thread.start()
        assert self._queue is not None
        self._queue.put(jobs)
        if wait:
            self._drain()

    def _drain(self) -> None:
        if self._queue is not None:
            self._queue.join()

    def _worker(self) -> None:
        assert self._queue is not None
        while True:
            jobs = self._queue.get()
            try:
                if jobs is None:
                    return
                self._outbox.send(jobs, background=True)
            except BaseException as e:  # pragma: no cover - the outbox records every failure itself
                self._outbox.note_error(e)
            finally:
                self._queue.task_done()

    def _stop_worker(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _call_on_flush(self, info: ShardInfo) -> None:
        if self.on_flush is not None:
            self.on_flush(info)

    def _write_job(self, job: Job) -> ShardInfo:
        """Encode and durably write one shard (any thread); raises on failure, leaving no file."""
        from probes.runlog.encode import encode
        from probes.runlog.files import atomic_write

        data, n_total, step_min, step_max = encode(
            job,
            timeline=self.timeline,
            parent=self.parent,
            fork_step=self.fork_step,
            run_info=self.run_info,
            max_header_bytes=self.max_header_bytes,
        )
        name = fmt.shard_name(job.seq, self.timeline)
        atomic_write(self.path, name, data)
        with self._guard:
            for source, describe in job.describes.items():
                if describe is not None and job.describe_version[source] == self._describe_version.get(source):
                    self._describe_durable[source] = (job.seq, job.describe_version[source])
            self.n_shards += 1
            self.n_flushed_records += n_total
        return ShardInfo(self.path / name, job.seq, self.timeline, n_total, step_min, step_max, job.status)


def _check_int_arg(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"Expected `{name}` to be {what}, got {value!r}.")


def _json_roundtrip(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(fmt.dumps(dict(value)))
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"Expected {what} to be JSON-serialisable: {e}") from None


def _default_run_info() -> dict[str, Any]:
    try:
        from importlib.metadata import version

        probes_version = version("probes")
    except Exception:  # pragma: no cover - running from a source tree
        probes_version = "unknown"
    return {
        "probes_version": probes_version,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
    }


_OPEN_WRITERS: weakref.WeakSet[RunWriter] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:  # pragma: no cover - runs at interpreter exit
    """Interpreter exit without close(): write what is buffered and mark the run ``interrupted``
    (its owner never closed it), so that readers and ``probes watch`` see it ended."""
    import warnings

    for writer in list(_OPEN_WRITERS):
        if writer._pid != os.getpid():  # a forked child holds a copy: never write the parent's records twice
            continue
        try:
            writer.close("interrupted")
        except Exception as e:
            warnings.warn(f"probes run log {writer.path}: {e}", stacklevel=1)

