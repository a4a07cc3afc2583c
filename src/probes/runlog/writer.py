"""The run-log writer: buffers records and writes them as immutable, atomically renamed shards.

A flush stacks each metric of each source along a new leading step axis on the records' device,
moves every stacked tensor to the host in one transfer, and writes one safetensors file: first
under a hidden temporary name, then ``fsync``, ``os.replace`` to the final name and ``fsync`` of
the directory. A crash (even SIGKILL) therefore loses at most the records not yet flushed and
never leaves a partial shard under a shard name. Shards are never rewritten or deleted.
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
from safetensors.torch import save as _st_save

from probes.records import Record
from probes.runlog import format as fmt
from probes.runlog.errors import RunLogError
from probes.runlog.files import DirLock, atomic_write
from probes.runlog.lineage import Branch
from probes.runlog.stacking import Rejected, Stacker, compact, st_dtype

__all__ = ["RunWriter", "ShardInfo"]



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


@dataclass
class _Block:
    steps: torch.Tensor
    epochs: torch.Tensor
    times: torch.Tensor
    names: tuple[str, ...]
    # (metric names, stacked tensor): [n, *shape] for one name, [n, len(names), *shape] for several
    groups: list[tuple[tuple[str, ...], torch.Tensor]]


@dataclass
class _Job:
    seq: int
    blocks: dict[str, _Block]
    describes: dict[str, Any]
    status: str


class RunWriter:
    """Writes probe records to a run directory as numbered safetensors shards.

    It is a :class:`~probes.records.RecordSink`: probes call :meth:`register_source` once and
    :meth:`write` per record. Records are buffered and flushed as a new shard every
    ``flush_every_n`` records or ``flush_every_s`` seconds (checked on each write and by
    :meth:`maybe_flush`), on :meth:`flush` and on :meth:`close`. One process at a time may write
    a directory (an advisory lock on ``.lock`` enforces it).

    Args:
        path: the run directory; created if missing. It must hold no shards unless ``branch``
            is given.
        branch: attach to an existing log as a new timeline (see :class:`Branch`); records of
            ``branch.parent`` after ``branch.fork_step`` are superseded for readers.
        flush_every_n: flush after this many buffered records (all sources together).
        flush_every_s: flush when the oldest buffered record is this old, in seconds; None to
            flush on count only.
        run_info: JSON-serialisable run information stored in every shard (merged over host,
            pid, versions and start time).
        background: serialise and write shards on a background thread; the caller only stacks
            tensors. :meth:`flush` still waits unless ``wait=False``.
        max_pending: with ``background``, the most flushes queued before :meth:`write` blocks.
        on_flush: called with a :class:`ShardInfo` after each shard is durably on disk (on the
            background thread when ``background``).

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
        flush_every_s: Optional[float] = 30.0,
        run_info: Optional[Mapping[str, Any]] = None,
        background: bool = False,
        max_pending: int = 2,
        on_flush: Optional[Callable[[ShardInfo], None]] = None,
    ) -> None:
        if not isinstance(flush_every_n, int) or isinstance(flush_every_n, bool) or flush_every_n < 1:
            raise ValueError(f"Expected `flush_every_n` to be a positive int, got {flush_every_n!r}.")
        if flush_every_s is not None and (
            not isinstance(flush_every_s, (int, float)) or isinstance(flush_every_s, bool) or not flush_every_s > 0
        ):
            raise ValueError(
                f"Expected `flush_every_s` to be a positive number of seconds or None, got {flush_every_s!r}."
            )
        if not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 1:
            raise ValueError(f"Expected `max_pending` to be a positive int, got {max_pending!r}.")
        if branch is not None and not isinstance(branch, Branch):
            raise ValueError(f"Expected `branch` to be a probes.runlog.Branch or None, got {branch!r}.")
        if on_flush is not None and not callable(on_flush):
            raise ValueError(f"Expected `on_flush` to be callable, got {on_flush!r}.")
        self.run_info = _default_run_info()
        if run_info is not None:
            if not isinstance(run_info, Mapping):
                raise ValueError(f"Expected `run_info` to be a mapping, got {type(run_info).__name__}.")
            self.run_info.update(_json_roundtrip(run_info, "run_info"))
        self.flush_every_n = flush_every_n
        self.flush_every_s = None if flush_every_s is None else float(flush_every_s)
        self.background = bool(background)
        self.max_pending = max_pending
        self.on_flush = on_flush

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunLogError(f"Run-log path {self.path} exists and is not a directory. Pass a directory path.")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock(self.path)
        try:
            existing = [p for p in (fmt.parse_shard_name(n) for n in os.listdir(self.path)) if p is not None]
            for name in os.listdir(self.path):
                if name.startswith(fmt.TMP_PREFIX):  # left by a crashed writer; never visible to readers
                    (self.path / name).unlink(missing_ok=True)
            if existing and branch is None:
                raise RunLogError(
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

        self._describes: dict[str, Any] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        self._stacker = Stacker()
        self._buffers: dict[str, list[tuple[Record, float]]] = {}
        self._n_buffered = 0
        self._oldest: Optional[float] = None
        self._last_step = self.fork_step if branch is not None else -1
        self.n_flushed_records = 0
        self.n_shards = 0
        self.closed = False
        self._queue: Optional[queue.Queue[Optional[_Job]]] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._pid = os.getpid()
        _OPEN_WRITERS.add(self)
        if branch is not None:  # make the supersede visible to readers right away
            try:
                self._submit(self._take_job("running"), wait=True)
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
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")

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

    # ------------------------------------------------------------------ sink protocol
    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        """Declare ``source`` and its JSON-serialisable definition (stored in every shard).

        Raises:
            ValueError: ``source`` is not a non-empty string without '/', or ``describe`` is not
                JSON-serialisable.
        """
        _check_source(source)
        if not isinstance(describe, Mapping):
            raise ValueError(
                f"Expected `describe` of source {source!r} to be a mapping, got {type(describe).__name__}."
            )
        self._describes[source] = _json_roundtrip(describe, f"describe() of source {source!r}")

    def write(self, record: Record) -> None:
        """Buffer one record; flush when a threshold is reached.

        Raises:
            RunLogError: the writer is closed, a background flush failed, or the record's metric
                names differ from the earlier records of its source.
            ValueError: a malformed record (bad source, step, or metric names).
        """
        if self.closed:
            raise RunLogError(f"RunWriter({self.path}) is closed; open a new writer to write more records.")
        if self._error is not None:
            self._raise_worker_error()
        source = record.source
        names = self._names.get(source)
        if names is None:
            _check_source(source)
            names = self._new_source(source, record)
        elif tuple(record.tensors) != names and set(record.tensors) != set(names):
            raise RunLogError(
                f"Record of source {source!r} at step {record.step} has metrics {sorted(record.tensors)},"
                f" but earlier records of this source have {sorted(names)}. Every record of a source"
                " must carry the same metric names; emit different sets under different sources."
            )
        step = record.step
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValueError(f"Expected `record.step` to be an int, got {step!r} (source {source!r}).")
        now = time.time()
        buf = self._buffers.get(source)
        if buf is None:
            buf = self._buffers[source] = []
        buf.append((record, now))
        self._n_buffered += 1
        if step > self._last_step:
            self._last_step = step
        if self._oldest is None:
            self._oldest = time.monotonic()
        if self._n_buffered >= self.flush_every_n or self._due():
            self.flush(wait=False)

    def _new_source(self, source: str, record: Record) -> tuple[str, ...]:
        names = tuple(record.tensors)
        for name in names:
            if not isinstance(name, str) or not name or (name.startswith("__") and name.endswith("__")):
                raise ValueError(
                    f"Metric names of source {source!r} must be non-empty strings not of the form '__x__'"
                    f" (reserved for the index), got {name!r}."
                )
        if source not in self._describes:
            self._describes[source] = {"source": source}
        self._names[source] = names
        return names

    def _due(self) -> bool:
        return (
            self.flush_every_s is not None
            and self._oldest is not None
            and time.monotonic() - self._oldest >= self.flush_every_s
        )

    def maybe_flush(self) -> bool:
        """Flush (without waiting) if the time threshold has passed; returns whether it did."""
        if self.closed or not self._n_buffered or not self._due():
            return False
        self.flush(wait=False)
        return True

    def flush(self, *, wait: bool = True) -> None:
        """Write the buffered records as one shard.

        Args:
            wait: block until every pending shard is durably on disk (always true without
                ``background``).

        Raises:
            RunLogError: a shard could not be written (also one from an earlier background flush).
        """
        if self.closed:
            return
        self._check_process()
        if self._error is not None:
            self._raise_worker_error()
        if self._n_buffered:
            self._submit(self._take_job("running"), wait=wait)
        elif wait:
            self._drain()

    def close(self, status: str = "finished") -> None:
        """Flush, mark the run's status in a last shard, stop the background thread, release the lock.

        Args:
            status: ``"finished"``, ``"failed"`` or ``"interrupted"``; readers and ``probes watch``
                report it.

        Raises:
            ValueError: an unknown status.
            RunLogError: the last shard could not be written.
        """
        if status not in fmt.STATUSES:
            raise ValueError(f"Expected `status` to be one of {fmt.STATUSES}, got {status!r}.")
        if self.closed:
            return
        self._check_process()
        try:
            if self._error is None:
                self._submit(self._take_job(status), wait=True)
        finally:
            self.closed = True
            self._stop_worker()
            self._lock.release()
            _OPEN_WRITERS.discard(self)
        if self._error is not None:
            self._raise_worker_error()

    # ------------------------------------------------------------------ flushing
    def _take_job(self, status: str) -> _Job:
        """Stack the buffer on its device (caller thread) and reserve a shard number.

        A record whose tensors do not match its source's schema is dropped (the rest stay
        buffered) and reported with a :class:`RunLogError`.
        """
        blocks: dict[str, _Block] = {}
        for source, buf in self._buffers.items():
            if not buf:
                continue
            recs = [r for r, _ in buf]
            try:
                groups = self._stacker.stack(source, self._names[source], recs)
            except Rejected as e:
                bad = {id(r) for r in (e.bad if e.bad is not None else recs)}
                self._buffers[source] = [(r, t) for r, t in buf if id(r) not in bad]
                self._n_buffered -= len(bad)
                raise RunLogError(
                    f"{e}. Dropped {len(bad)} record(s) of source {source!r}; the other buffered records are kept."
                ) from None
            blocks[source] = _Block(
                steps=torch.tensor([r.step for r in recs], dtype=torch.int64),
                epochs=torch.tensor([int(r.epoch) for r in recs], dtype=torch.int64),
                times=torch.tensor([t for _, t in buf], dtype=torch.float64),
                names=self._names[source],
                groups=groups,
            )
        self._buffers = {s: [] for s in self._buffers}
        self._n_buffered = 0
        self._oldest = None
        job = _Job(self._next_seq, blocks, {s: self._describes[s] for s in blocks}, status)
        self._next_seq += 1
        return job

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise RunLogError(
                f"RunWriter({self.path}) was opened by process {self._pid}; a forked child (pid {os.getpid()})"
                " must not write to it. Open a writer on another directory in the child."
            )

    def _submit(self, job: _Job, *, wait: bool) -> None:
        self._check_process()
        if not self.background:
            self._write_job(job)
            return
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self.max_pending)
            self._thread = threading.Thread(target=self._worker, name=f"probes-runlog:{self.path.name}", daemon=True)
            self._thread.start()
        assert self._queue is not None
        self._queue.put(job)
        if wait:
            self._drain()

    def _drain(self) -> None:
        if self._queue is not None:
            self._queue.join()
        if self._error is not None:
            self._raise_worker_error()

    def _worker(self) -> None:
        assert self._queue is not None
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._write_job(job)
            except BaseException as e:
                if self._error is None:
                    self._error = e
            finally:
                self._queue.task_done()

    def _stop_worker(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise_worker_error(self) -> None:
        err = self._error
        if isinstance(err, RunLogError):
            raise err
        raise RunLogError(f"Writing a shard to {self.path} failed: {type(err).__name__}: {err}") from err

    def _write_job(self, job: _Job) -> None:
        tensors: dict[str, torch.Tensor] = {}
        spec: dict[str, list[Any]] = {}
        sources: dict[str, Any] = {}
        step_min, step_max, n_total = None, None, 0
        for source, blk in job.blocks.items():
            parts = {fmt.STEP: blk.steps, fmt.EPOCH: blk.epochs, fmt.TIME: blk.times}
            for names, stacked in blk.groups:
                host = stacked.to("cpu")  # one bulk transfer per group of same-dtype, same-shape metrics
                if len(names) == 1:
                    parts[names[0]] = host.contiguous()
                else:
                    parts.update({m: compact(host[:, k]) for k, m in enumerate(names)})
            for name, t in parts.items():
                key = f"{source}/{name}"
                tensors[key] = t
                crc = fmt.data_crc(t.reshape(-1).view(torch.uint8).numpy())
                spec[key] = [st_dtype(t.dtype), list(t.shape), crc]
            n = len(blk.steps)
            lo, hi = (int(blk.steps.min()), int(blk.steps.max())) if n else (-1, -1)
            sources[source] = {
                "n": n,
                "metrics": list(blk.names),
                "step_min": lo,
                "step_max": hi,
                "describe": job.describes[source],
            }
            if n:
                step_min = lo if step_min is None else min(step_min, lo)
                step_max = hi if step_max is None else max(step_max, hi)
                n_total += n
        fields = {
            fmt.K_FORMAT: fmt.FORMAT_NAME,
            fmt.K_SCHEMA: fmt.SCHEMA_VERSION,
            fmt.K_SEQ: job.seq,
            fmt.K_TIMELINE: self.timeline,
            fmt.K_PARENT: self.parent,
            fmt.K_FORK: self.fork_step,
            fmt.K_STATUS: job.status,
            fmt.K_CREATED: time.time(),
            fmt.K_RUN: self.run_info,
            fmt.K_SOURCES: sources,
            fmt.K_TENSORS: spec,
            fmt.K_STEPS: {
                "n": n_total,
                "min": -1 if step_min is None else step_min,
                "max": -1 if step_max is None else step_max,
            },
        }
        metadata = {k: fmt.dumps(v) for k, v in fields.items()}
        metadata[fmt.K_CRC] = str(fmt.canonical_crc(metadata))
        data = _st_save(tensors, metadata=metadata)
        name = fmt.shard_name(job.seq, self.timeline)
        atomic_write(self.path, name, data)
        self.n_shards += 1
        self.n_flushed_records += n_total
        if self.on_flush is not None:
            self.on_flush(
                ShardInfo(
                    self.path / name,
                    job.seq,
                    self.timeline,
                    n_total,
                    -1 if step_min is None else step_min,
                    -1 if step_max is None else step_max,
                    job.status,
                )
            )


def _check_source(source: Any) -> None:
    if not isinstance(source, str) or not source or "/" in source:
        raise ValueError(f"Expected a source name to be a non-empty string without '/', got {source!r}.")


def _json_roundtrip(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(fmt.dumps(dict(value)))
    except (TypeError, ValueError) as e:
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
def _flush_open_writers() -> None:  # pragma: no cover - runs at interpreter exit
    """Interpreter exit without close(): write what is buffered so it is not lost."""
    for writer in list(_OPEN_WRITERS):
        if writer._pid != os.getpid():  # a forked child holds a copy: never write the parent's records twice
            continue
        try:
            writer.flush(wait=True)
            writer._stop_worker()
            writer._lock.release()
        except Exception:
            pass
