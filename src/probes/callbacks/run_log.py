"""RunLog: the sink callback that streams every probe record to a crash-safe safetensors run log."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from probes.core.records import Record
from probes.integrations.lightning import ProbeCallback
from probes.runlog import Branch, RunReader, RunWriter, ShardInfo, open_run
from probes.runlog.errors import ExistingRunError
from probes.runlog.layout import MAX_HEADER_BYTES, parse_shard_name
from probes.runlog.writer import DEFAULT_MAX_HELD_BYTES

__all__ = ["RunLog"]

_STATE_VERSION = 1


class RunLog(Callback):
    """Writes the records of every probe callback of the Trainer to a run directory.

    In ``setup`` it subscribes to every :class:`~probes.integrations.lightning.ProbeCallback` in
    ``trainer.callbacks``. Records are buffered (tensors stay on their device) and flushed as a
    new immutable shard every ``flush_every_n`` records or ``flush_every_s`` seconds, whenever a
    checkpoint is saved, at ``teardown`` and in ``on_exception``; a flush stacks each metric and
    moves it to the host in one transfer, and with ``background=True`` serialises and fsyncs on a
    background thread. Only global rank zero writes.

    Resuming from a checkpoint continues the same directory: the checkpoint holds this callback's
    timeline and last flushed step, and the resumed session writes a new timeline whose records
    supersede those the abandoned session wrote after that step (see ``docs/runlog.md``). Read
    the log with :func:`probes.runlog.open_run` or the ``probes`` CLI.

    Args:
        dirpath: the run directory. A fresh (not resumed) run needs an empty or missing one.
        version: None (default): log to ``dirpath`` itself. ``"auto"``: log to
            ``dirpath/version_N`` with the next free N, as Lightning's loggers do, so re-running a
            script never collides with an earlier run (a resumed run continues the directory its
            checkpoint names). An int N: ``dirpath/version_N``.
        name: distinguishes two RunLog callbacks in one Trainer (part of ``state_key``).
        flush_every_n: flush after this many buffered records (all probes together).
        flush_every_s: flush when the oldest buffered record is this many seconds old, or after a
            training batch when the last flush is this long ago (default 1 s, so ``probes watch``
            shows a record within about ``flush_every_s`` + one step + its poll interval); None to
            flush on count only.
        run_info: JSON-serialisable facts stored with the run (config, git hash...).
        background: write shards on a background thread.
        on_flush: called with a :class:`~probes.runlog.ShardInfo` once each shard is durably on
            disk (from the background thread when ``background``).
        on_error: ``"hold"`` (default): a shard write that fails with an I/O error (disk full...)
            is retried with backoff, then held in memory and retried at later flushes while
            training continues; the fit ends with :class:`~probes.runlog.RecordsLostError` only if
            records were finally lost. ``"raise"``: raise a ``RunLogError`` as soon as a write
            fails after its retries.
        max_held_bytes: most bytes of records held in memory while the disk refuses writes
            (default 256 MiB); beyond it the oldest held records are dropped (and reported).
        max_header_bytes: header cap of the shards (default: the reader's default cap).

    Raises:
        ValueError: an invalid argument, or two RunLog callbacks with the same ``name``.
        probes.runlog.RunLogError: the directory already holds a run that this fit does not
            resume, or another process is writing it.

    Example::

        trainer = Trainer(callbacks=[KeywordProbe(pairs, tok, model="model"), RunLog("runs/exp1")])
        trainer.fit(module, loader)
        steps, p = open_run("runs/exp1").read("keyword/p_first")
    """

    def __init__(
        self,
        dirpath: os.PathLike[str] | str,
        *,
        version: Optional[int | str] = None,
        name: str = "runlog",
        flush_every_n: int = 4096,
        flush_every_s: Optional[float] = 1.0,
        run_info: Optional[Mapping[str, Any]] = None,
        background: bool = True,
        on_flush: Optional[Callable[[ShardInfo], None]] = None,
        on_error: str = "hold",
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        if not isinstance(dirpath, (str, os.PathLike)) or not os.fspath(dirpath):
            raise ValueError(f"Expected `dirpath` to be a non-empty path, got {dirpath!r}.")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Expected `name` to be a non-empty string, got {name!r}.")
        if not isinstance(flush_every_n, int) or isinstance(flush_every_n, bool) or flush_every_n < 1:
            raise ValueError(f"Expected `flush_every_n` to be a positive int, got {flush_every_n!r}.")
        if flush_every_s is not None and (
            not isinstance(flush_every_s, (int, float)) or isinstance(flush_every_s, bool) or not flush_every_s > 0
        ):
            raise ValueError(f"Expected `flush_every_s` to be a positive number or None, got {flush_every_s!r}.")
        if run_info is not None and not isinstance(run_info, Mapping):
            raise ValueError(f"Expected `run_info` to be a mapping or None, got {type(run_info).__name__}.")
        if version is not None and version != "auto" and not (
            isinstance(version, int) and not isinstance(version, bool) and version >= 0
        ):
            raise ValueError(f"Expected `version` to be None, 'auto' or an int >= 0, got {version!r}.")
        self.root = Path(dirpath)
        self.version = version
        self._auto_pending = version == "auto"
        self.dirpath = self.root if version in (None, "auto") else self.root / f"version_{version}"
        self.name = name
        self.flush_every_n = flush_every_n
        self.flush_every_s = flush_every_s
        self.run_info = dict(run_info or {})
        if on_flush is not None and not callable(on_flush):
            raise ValueError(f"Expected `on_flush` to be callable or None, got {on_flush!r}.")
        self.background = bool(background)
        self.on_flush = on_flush
        if on_error not in ("hold", "raise"):
            raise ValueError(f"Expected `on_error` to be 'hold' or 'raise', got {on_error!r}.")
        for arg, value, low in (("max_held_bytes", max_held_bytes, 0), ("max_header_bytes", max_header_bytes, 1024)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"Expected `{arg}` to be an int >= {low}, got {value!r}.")
        self.on_error = on_error
        self.max_held_bytes = max_held_bytes
        self.max_header_bytes = max_header_bytes
        self.writer: Optional[RunWriter] = None
        self._trainer: Optional[pl.Trainer] = None
        self._describes: dict[str, Mapping[str, Any]] = {}
        self._resume: Optional[dict[str, int]] = None  # from a checkpoint, consumed by the next open
        self._timeline = -1  # of the last writer this instance opened
        self._last_step = -1
        self._next_seq = 0

    @property
    @override
    def state_key(self) -> str:
        return f"RunLog[{self.name}]"

    def reader(self, **kwargs: Any) -> RunReader:
        """:func:`~probes.runlog.open_run` on this callback's directory."""
        return open_run(self.dirpath, **kwargs)

    # ------------------------------------------------------------------ sink protocol
    def register_source(self, source: str, describe: Mapping[str, Any]) -> None:
        self._describes[source] = describe
        if self.writer is not None:
            self.writer.register_source(source, describe)

    def write(self, record: Record) -> None:
        writer = self.writer if self.writer is not None else self._open()
        writer.write(record)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    # ------------------------------------------------------------------ opening and closing
    def _open(self) -> RunWriter:
        self._resolve_version()
        branch: Optional[Branch] = None
        trainer = self._trainer
        step = trainer.global_step if trainer is not None else 0
        if self._resume is not None:
            branch = Branch(parent=self._resume["timeline"], fork_step=self._resume["last_step"])
            self._resume = None
        elif self._timeline >= 0:  # this instance wrote here before (a second fit in the same process)
            branch = Branch(parent=self._timeline, fork_step=self._last_step)
        elif step > 0 and self.dirpath.is_dir():
            timelines = [p[1] for p in map(parse_shard_name, os.listdir(self.dirpath)) if p is not None]
            if timelines:
                rank_zero_warn(
                    f"RunLog: resuming at global step {step} without RunLog state in the checkpoint; records"
                    f" of {self.dirpath} from step {step} on are superseded by this session."
                )
                branch = Branch(parent=max(timelines), fork_step=step - 1)
        info = dict(self.run_info)
        if trainer is not None:
            info.setdefault("world_size", trainer.world_size)
            info.setdefault("max_steps", trainer.max_steps)
            info.setdefault("opened_at_step", step)
        try:
            self.writer = RunWriter(
                self.dirpath,
                branch=branch,
                flush_every_n=self.flush_every_n,
                flush_every_s=self.flush_every_s,
                run_info=info,
                background=self.background,
                on_flush=self.on_flush,
                on_error=self.on_error,
                max_held_bytes=self.max_held_bytes,
                max_header_bytes=self.max_header_bytes,
            )
        except ExistingRunError:
            raise ExistingRunError(  # the writer's advice (branch=...) is for RunWriter users
                f"RunLog: {self.dirpath} already holds a run log from another run. Pass version='auto'"
                " (each run gets the next DIR/version_N) or give RunLog a new directory, or resume the run"
                " that wrote it from its checkpoint (trainer.fit(..., ckpt_path=...)), which continues this"
                " log as a new timeline."
            ) from None
        for source, describe in self._describes.items():
            self.writer.register_source(source, describe)
        self._timeline = self.writer.timeline
        return self.writer

    def _close(self, status: str) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        try:
            writer.close(status)
        finally:
            self._timeline, self._last_step = writer.timeline, writer.last_step
            self._next_seq = writer.next_seq

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        same = [cb for cb in trainer.callbacks if isinstance(cb, RunLog) and cb.state_key == self.state_key]  # type: ignore[attr-defined]
        if len(same) > 1:
            raise ValueError(f"Two RunLog callbacks share the name {self.name!r}; give each a different `name`.")
        if not trainer.is_global_zero:
            return
        probes = ProbeCallback.probe_callbacks(trainer)
        if not probes:
            rank_zero_warn("RunLog found no probe callbacks in trainer.callbacks; nothing will be logged.")
        for probe in probes:
            probe.subscribe(self)

    def _resolve_version(self) -> None:
        """``version="auto"``: the next free ``version_N`` under ``root`` (once per callback)."""
        if not self._auto_pending:
            return
        taken = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                suffix = entry.name.removeprefix("version_")
                if entry.name.startswith("version_") and suffix.isdigit() and entry.is_dir():
                    taken.append(int(suffix))
        self.dirpath = self.root / f"version_{max(taken, default=-1) + 1}"
        self._auto_pending = False

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.writer is None:
            self._open()  # fail early on a directory that holds another run; mark a resume at once

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.writer is not None:
            self.writer.maybe_flush()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write what is buffered or held and the ``finished`` status.

        Raises:
            probes.runlog.RecordsLostError: records could not be written (disk full...) and were
                lost; every other record is in the log and the status is written if possible.
        """
        self._resume = None  # a checkpoint loaded for this stage must not steer a later fit
        self._close("finished")

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Ctrl-C, and SIGTERM (Lightning raises SIGTERMException, a SystemExit) stop a run; errors fail it
        status = "interrupted" if isinstance(exception, (KeyboardInterrupt, SystemExit)) else "failed"
        try:
            self._close(status)
        except Exception as e:  # never mask the training error
            rank_zero_warn(f"RunLog could not flush {self.dirpath} after {type(exception).__name__}: {e}")

    @override
    def state_dict(self) -> dict[str, Any]:
        if self.writer is not None:
            self.writer.flush()  # every record up to the checkpoint is on disk before it is saved
            timeline, last_step, next_seq = self.writer.timeline, self.writer.last_step, self.writer.next_seq
        else:
            timeline, last_step, next_seq = self._timeline, self._last_step, self._next_seq
        return {
            "version": _STATE_VERSION,
            "dirpath": str(self.dirpath),
            "timeline": timeline,
            "last_step": last_step,
            "next_seq": next_seq,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = int(state_dict.get("version", 0))
        if version > _STATE_VERSION:
            rank_zero_warn(f"{self.state_key}: checkpoint state version {version} is newer than {_STATE_VERSION}.")
        self._resume = {
            "timeline": int(state_dict.get("timeline", -1)),
            "last_step": int(state_dict.get("last_step", -1)),
        }
        saved = state_dict.get("dirpath")
        if saved and self._auto_pending and Path(saved).resolve().parent == self.root.resolve():
            self.dirpath = Path(saved)  # a resumed run continues its own version directory
            self._auto_pending = False
        elif saved and Path(saved).resolve() != self.dirpath.resolve():
            rank_zero_warn(
                f"RunLog: the checkpoint was written while logging to {saved}; this session logs to {self.dirpath}."
            )
