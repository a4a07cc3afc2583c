"""I/O fault tolerance of the writer: retries with backoff, a bounded hold, loss accounting.

:class:`Outbox` writes jobs (shards) in order. A write that fails with an ``OSError`` (disk full,
EIO, a read-only remount...) is retried ``retries`` times with backoff ``backoff_s * 4**i``. If
it still fails, the job is *held* in host memory and the training goes on; later jobs queue
behind it (order is kept) and the held jobs are retried at later flushes, at most every few
seconds. Held data is bounded by ``max_held_bytes``: beyond it the oldest held jobs are dropped
and counted as lost. :meth:`Outbox.finish` makes a last attempt at close, writes the final status
(as an empty marker shard if the data cannot be written), and the writer then raises
:class:`~probes.runlog.errors.RecordsLostError` when records were finally lost. Errors that are
not I/O errors (a bug, a shard name already taken) are not retried: that job is lost at once.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from probes.runlog.encode import Job
from probes.runlog.errors import RecordsLostError, RunLogError, RunLogWarning

__all__ = ["ON_ERROR", "Outbox"]

ON_ERROR = ("hold", "raise")
MAX_RETRY_INTERVAL_S = 30.0


def _describe_error(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        code = f"errno {e.errno}" if e.errno is not None else type(e).__name__
        return f"{type(e).__name__} ({code}): {e.strerror}"
    return f"{type(e).__name__}: {e}"


class Outbox:
    """Writes jobs in order with retries; holds failed ones within a memory bound; counts losses.

    Args:
        write: writes one job durably, raising on failure; returns what ``on_written`` gets.
        on_written: called after each successful write (its own errors become warnings).
        path: the run directory (for messages).
        retries, backoff_s: attempts after the first, and the first backoff in seconds.
        max_held_bytes: most bytes of tensor data held in memory.
        raise_at_once: make :meth:`raise_pending` raise after a write failed past its retries.
    """

    def __init__(
        self,
        write: Callable[[Job], Any],
        *,
        path: Path,
        retries: int,
        backoff_s: float,
        max_held_bytes: int,
        raise_at_once: bool,
        on_written: Optional[Callable[[Any], None]] = None,
    ) -> None:
        self._write = write
        self._on_written = on_written
        self.path = path
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_held_bytes = max_held_bytes
        self.raise_at_once = raise_at_once
        self.held: list[Job] = []
        self.held_bytes = 0
        self.lost_records = 0
        self.lost_jobs = 0
        self.lost_steps: Optional[tuple[int, int]] = None
        self.reasons: list[str] = []
        self.status_written = True
        self._pending: Optional[RunLogError] = None
        self._interval = 0.0
        self._next_retry = 0.0
        self._lock = threading.RLock()

    @property
    def retry_due(self) -> bool:
        """Whether held jobs wait and their retry interval has passed."""
        return bool(self.held) and time.monotonic() >= self._next_retry

    @property
    def n_held_records(self) -> int:
        with self._lock:
            return sum(j.n_records for j in self.held)

    # ------------------------------------------------------------------ writing
    def send(self, jobs: list[Job], *, background: bool = False) -> None:
        """Write ``jobs`` in order (after any held ones); hold what fails."""
        with self._lock:
            if self.held and time.monotonic() >= self._next_retry:
                self._retry_held(retries=0)
            for job in jobs:
                if self.held:
                    self._hold(job, None)  # behind the held ones: shards land in order
                    continue
                error = self._attempt(job, self.retries)
                if error is not None:
                    self._hold(job, error)

    def _attempt(self, job: Job, retries: int) -> Optional[BaseException]:
        """Write ``job``; None on success, else the last error (non-I/O errors lose the job)."""
        for i in range(retries + 1):
            try:
                job.attempts += 1
                result = self._write(job)
            except OSError as e:
                job.errors.append(_describe_error(e))
                if i < retries:
                    time.sleep(self.backoff_s * 4**i)
                    continue
                return e
            except Exception as e:  # not an I/O fault: retrying cannot help
                self._lose(job, f"{_describe_error(e)}")
                return None
            self._written(job, result)
            return None
        return None  # pragma: no cover

    def _written(self, job: Job, result: Any) -> None:
        job.written = True
        self._interval = 0.0
        if self._on_written is not None:
            try:
                self._on_written(result)
            except Exception as e:  # a failing callback must not turn a durable shard into a retry
                warnings.warn(f"on_flush callback failed for {self.path}: {_describe_error(e)}", RunLogWarning, 2)

    def _retry_held(self, retries: int) -> None:
        """Retry held jobs in order; stop at the first that still fails (the disk still refuses)."""
        while self.held:
            job = self.held[0]
            error = self._attempt(job, retries)
            if error is not None:
                first = self.backoff_s * 4 ** (self.retries + 1)
                self._interval = min(MAX_RETRY_INTERVAL_S, max(2 * self._interval, first))
                self._next_retry = time.monotonic() + self._interval
                return
            self.held.pop(0)
            self.held_bytes -= job.nbytes
        if not self.held:
            self.held_bytes = 0

    def _hold(self, job: Job, error: Optional[BaseException]) -> None:
        first = not self.held
        job.to_host()
        self.held.append(job)
        self.held_bytes += job.nbytes
        if error is not None:
            if first:
                self._interval = min(MAX_RETRY_INTERVAL_S, self.backoff_s * 4 ** (self.retries + 1))
                self._next_retry = time.monotonic() + self._interval
            message = (
                f"Could not write shard seq {job.seq} to {self.path} after {job.attempts} attempts"
                f" ({_describe_error(error)}). Holding {sum(j.n_records for j in self.held)} records"
                f" ({self.held_bytes} bytes) in memory and retrying at later flushes; at most"
                f" {self.max_held_bytes} bytes are held, older records are dropped beyond that."
            )
            warnings.warn(message + " Training continues.", RunLogWarning, stacklevel=2)
            if self.raise_at_once and self._pending is None:
                self._pending = RunLogError(message + " (on_error='raise')")
        while self.held and self.held_bytes > self.max_held_bytes:
            dropped = self.held.pop(0)
            self.held_bytes -= dropped.nbytes
            self._lose(dropped, f"the memory bound of {self.max_held_bytes} bytes for held records was reached")

    def _lose(self, job: Job, reason: str) -> None:
        if job.n_records:
            self.lost_records += job.n_records
            self.lost_jobs += 1
            if job.step_range is not None:
                lo, hi = job.step_range
                if self.lost_steps is not None:
                    lo, hi = min(lo, self.lost_steps[0]), max(hi, self.lost_steps[1])
                self.lost_steps = (lo, hi)
            if reason not in self.reasons:
                self.reasons.append(reason)
            where = f", steps {job.step_range[0]}..{job.step_range[1]}" if job.step_range else ""
            warnings.warn(
                f"Lost {job.n_records} records of {self.path} (shard seq {job.seq}{where}): {reason}.",
                RunLogWarning,
                stacklevel=3,
            )
        if job.status != "running":
            self.status_written = False

    def note_error(self, error: BaseException) -> None:  # pragma: no cover - defensive
        with self._lock:
            self.reasons.append(_describe_error(error))

    # ------------------------------------------------------------------ closing and reporting
    def finish(self, make_marker: Callable[[], Job]) -> None:
        """Last attempt at close: write the held jobs if the disk allows; otherwise count them as
        lost and try to write the final status as an empty marker shard."""
        with self._lock:
            if not self.held:
                return
            status = self.held[-1].status
            self._retry_held(retries=self.retries)
            if not self.held:
                return
            tried = [j for j in self.held if j.errors]
            last = tried[-1].errors[-1] if tried else "the disk refused"
            for job in self.held:
                self._lose(job, f"still failing at close ({last})")
            self.held.clear()
            self.held_bytes = 0
            if status != "running":
                marker = make_marker()
                marker.status = status
                self._attempt(marker, self.retries)
                self.status_written = marker.written

    def raise_pending(self) -> None:
        """With ``raise_at_once``: raise the first write failure not yet raised."""
        with self._lock:
            error, self._pending = self._pending, None
        if error is not None:
            raise error

    def raise_if_lost(self) -> None:
        """Raise :class:`RecordsLostError` when records were finally lost."""
        if not self.lost_records:
            return
        steps = f" (steps {self.lost_steps[0]}..{self.lost_steps[1]})" if self.lost_steps else ""
        status = "" if self.status_written else " The final status could not be written either."
        raise RecordsLostError(
            f"{self.lost_records} records{steps} could not be written to {self.path} and were lost:"
            f" {'; '.join(self.reasons)}.{status} Free disk space (or fix the I/O error) and rerun the lost"
            " steps if you need them; every other record is in the log.",
            self.lost_records,
            self.lost_steps,
        )
