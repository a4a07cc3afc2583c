"""The run-log reader: a lazy, memory-mapped view of a run directory as numpy arrays."""

from __future__ import annotations

import heapq
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from probes.runlog import layout as fmt
from probes.runlog.errors import CorruptShardError, RunLogError, RunLogWarning
from probes.runlog.kinds import schema_problem
from probes.runlog.lineage import Branch, lineage, resolve
from probes.runlog.shard import _NP_DTYPE, DEFAULT_MAX_HEADER_BYTES, Shard

if TYPE_CHECKING:
    from probes.core.records import Record

__all__ = ["RunReader", "UnknownMetricError", "open_run"]

_MAX_OPEN_MAPS = 64


class UnknownMetricError(RunLogError, KeyError):
    """A metric or source name that the run does not contain; the message lists what it has."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class _Piece:
    """The visible rows of one source inside one shard, and where they go in the output."""

    shard: Shard
    pos: np.ndarray  # output positions (sorted)
    rows: np.ndarray  # rows in the shard
    contiguous: bool  # pos and rows are both runs of consecutive integers
    first: int = 0  # pos[0]
    end: int = 0  # pos[-1] + 1
    row0: int = 0  # rows[0]

    def __post_init__(self) -> None:
        self.first, self.end, self.row0 = int(self.pos[0]), int(self.pos[-1]) + 1, int(self.rows[0])


@dataclass
class _SourceIndex:
    steps: np.ndarray
    epochs: np.ndarray
    times: np.ndarray
    pieces: list[_Piece]
    metrics: list[str]
    describe: dict[str, Any]
    schema: dict[str, tuple[str, tuple[int, ...], Shard]] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)
    # (shard, output slice, row slice) per piece when every piece is contiguous: full reads use it
    full: Optional[list[tuple[Shard, slice, slice]]] = None


def open_run(
    path: os.PathLike[str] | str,
    *,
    strict: bool = True,
    timeline: Optional[int] = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> RunReader:
    """Open a run directory for reading (it may still be being written).

    Args:
        path: the run directory a :class:`~probes.runlog.RunWriter` (or the ``RunLog`` callback) writes.
        strict: raise on a corrupt shard (default); with False, skip it with a
            :class:`~probes.runlog.RunLogWarning` and read the rest.
        timeline: view the lineage of this timeline instead of the newest one (to inspect an
            abandoned branch).
        max_header_bytes: cap on a shard's header (JSON and metadata) size.

    Returns:
        A :class:`RunReader`.

    Raises:
        RunLogError: ``path`` is not a directory, or ``timeline`` does not exist.
        CorruptShardError: (strict) a shard is truncated, corrupted or foreign.
        UnsupportedSchemaError: (strict) a shard was written by a newer version of probes.

    Example::

        run = open_run("runs/exp1")
        steps, p = run.read("keyword/p_first")      # int64 [n], float32 [n, n_pairs]
    """
    return RunReader(path, strict=strict, timeline=timeline, max_header_bytes=max_header_bytes)


class RunReader:
    """A read-only view of a run directory: steps and metrics as numpy arrays.

    Shard headers and index arrays (steps, epochs, times) are read when the reader opens or
    refreshes; metric data is memory-mapped and read, checksum-verified, only when asked for.
    Exactly one record per (source, step) is visible: see :mod:`probes.runlog.lineage`.
    Step ranges are half-open ``[start, stop)`` in step units. bfloat16 metrics are returned as
    float32 by :meth:`read` (exactly) and as bfloat16 tensors by :meth:`records`.

    Use :func:`open_run` to construct one.
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        strict: bool = True,
        timeline: Optional[int] = None,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            what = "does not exist" if not self.path.exists() else "is not a directory"
            raise RunLogError(f"Run directory {self.path} {what}. Pass the directory given to RunLog / RunWriter.")
        if timeline is not None and (not isinstance(timeline, int) or isinstance(timeline, bool) or timeline < 0):
            raise ValueError(f"Expected `timeline` to be a non-negative int or None, got {timeline!r}.")
        if not isinstance(max_header_bytes, int) or max_header_bytes < 1024:
            raise ValueError(f"Expected `max_header_bytes` to be an int >= 1024, got {max_header_bytes!r}.")
        self.strict = bool(strict)
        self.max_header_bytes = max_header_bytes
        self._want_timeline = timeline
        self._shards: dict[str, Shard] = {}
        self._skipped: dict[str, str] = {}
        self._maps: OrderedDict[str, Any] = OrderedDict()
        self._index: dict[str, _SourceIndex] = {}
        self._timelines: dict[int, tuple[int, int]] = {}
        self._chain: list[tuple[int, float]] = []
        self._tip: Optional[int] = None
        self._status = "empty"
        self.refresh(force=True)

    def __repr__(self) -> str:
        return f"RunReader({str(self.path)!r}, sources={self.sources()}, timeline={self._tip}, status={self._status!r})"

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Drop the memory maps (arrays already returned stay valid)."""
        self._maps.clear()

    # ------------------------------------------------------------------ discovery
    def refresh(self, *, force: bool = False) -> bool:
        """Pick up shards written since the last refresh (or removed since).

        Returns:
            Whether anything changed.

        Raises:
            CorruptShardError, UnsupportedSchemaError: (strict) a new shard is bad.
        """
        try:
            names = {n: key for n in os.listdir(self.path) if (key := fmt.parse_shard_name(n)) is not None}
        except FileNotFoundError:
            raise RunLogError(f"Run directory {self.path} disappeared.") from None
        except OSError as e:
            raise RunLogError(f"Run directory {self.path} cannot be listed ({e.strerror or e}).") from None
        changed = force
        for gone in [n for n in self._shards if n not in names]:
            del self._shards[gone]
            self._maps.pop(gone, None)
            changed = True
        held = {(s.timeline, s.seq): s for s in self._shards.values()}
        for name in sorted(set(names) - set(self._shards) - set(self._skipped), key=names.__getitem__):
            try:
                shard = Shard.open(self.path / name, max_header_bytes=self.max_header_bytes)
                if not self.strict:
                    shard.verify()
                self._resolve_describes(shard, held)
            except FileNotFoundError:
                continue
            except RunLogError as e:  # corrupt, unsafe (link, FIFO, directory...), newer schema
                if self.strict:
                    raise
                self._skip(name, e)
                continue
            except OSError as e:  # pragma: no cover - Shard.open types these; belt and braces
                err = CorruptShardError(self.path / name, f"it cannot be read ({e.strerror or e})")
                if self.strict:
                    raise err from None
                self._skip(name, err)
                continue
            self._shards[name] = shard
            held[(shard.timeline, shard.seq)] = shard
            changed = True
        if changed:
            self._build_index()
        return changed

    def _resolve_describes(self, shard: Shard, held: dict[tuple[int, int], Shard]) -> None:
        """Attach each block's probe definition (stored once per timeline since schema 2) and check
        the block's metrics against its probe type's documented record schema.

        Raises:
            CorruptShardError: the shard holding a definition is missing, or a block breaks its
                probe type's schema.
        """
        for source, block in shard.sources.items():
            describe = block.describe
            if describe is None:
                origin = held.get((shard.timeline, block.describe_seq))
                describe = origin.describes.get(source) if origin is not None else None
                if describe is None:
                    err = CorruptShardError(
                        shard.path,
                        f"source {_short(source)}: its definition is stored in shard seq {block.describe_seq} of"
                        f" timeline {shard.timeline}, which is missing or unreadable",
                    )
                    if self.strict:
                        raise err
                    warnings.warn(f"{err.problem}; its records are shown without it", RunLogWarning, stacklevel=4)
                    describe = {}
            shard.describes[source] = dict(describe)
            metrics = {m: (shard.entries[f"{source}/{m}"].dtype, shard.entries[f"{source}/{m}"].shape[1:])
                       for m in block.metrics}
            problem = schema_problem(describe, metrics)
            if problem is not None:
                raise CorruptShardError(shard.path, f"source {_short(source)}: {problem}")

    def _skip(self, name: str, error: Exception) -> None:
        problem = getattr(error, "problem", None) or str(error)
        self._skipped[name] = problem
        warnings.warn(f"Skipping shard {self.path / name}: {problem}", RunLogWarning, stacklevel=3)

    def _build_index(self) -> None:
        shards = sorted(self._shards.values(), key=lambda s: (s.seq, s.timeline))
        timelines = self._collect_timelines(shards)
        shards = [s for s in shards if s.name in self._shards]
        self._timelines = timelines
        if self._want_timeline is not None and self._want_timeline not in timelines:
            raise RunLogError(
                f"Run {self.path} has no timeline {self._want_timeline}; it has {sorted(timelines) or 'none'}."
            )
        tip = self._want_timeline if self._want_timeline is not None else max(timelines, default=None)
        self._tip = tip
        self._chain = lineage(timelines, tip) if tip is not None else []
        in_view = dict(self._chain)
        tip_shards = [s for s in shards if s.timeline == tip]
        self._status = tip_shards[-1].status if tip_shards else "empty"
        order: dict[str, None] = {}
        for s in shards:
            if s.timeline in in_view:
                order.update((src, None) for src in s.sources if src not in order)
        self._index = {}
        for source in order:
            idx = self._index_source(source, shards)
            if idx is not None:
                self._index[source] = idx

    def _collect_timelines(self, shards: list[Shard]) -> dict[int, tuple[int, int]]:
        """timeline -> (parent, fork step), from each timeline's first shard. A later shard that
        disagrees raises (strict) or is dropped (lenient), in one pass however many disagree."""
        timelines: dict[int, tuple[int, int]] = {}
        first_of: dict[int, Shard] = {}
        for s in shards:
            known = timelines.setdefault(s.timeline, (s.parent, s.fork_step))
            first_of.setdefault(s.timeline, s)
            if known != (s.parent, s.fork_step):
                err = CorruptShardError(
                    s.path,
                    f"timeline {s.timeline} has parent/fork {s.parent}/{s.fork_step} here but"
                    f" {known[0]}/{known[1]} in {first_of[s.timeline].name}",
                )
                if self.strict:
                    raise err
                self._skip(s.name, err)
                del self._shards[s.name]
                self._maps.pop(s.name, None)
        return timelines

    def _index_source(self, source: str, shards: list[Shard]) -> Optional[_SourceIndex]:
        """Which row of which shard holds each visible step of ``source``, and its metric schema."""
        assert self._tip is not None
        blocks = [(s, s.sources[source]) for s in shards if source in s.sources]
        steps, which, rows = resolve(self._timelines, self._tip, [(s.timeline, s.seq, b.steps) for s, b in blocks])
        if len(steps) == 0:
            return None
        epochs = np.empty(len(steps), dtype=np.int64)
        times = np.empty(len(steps), dtype=np.float64)
        pieces: list[_Piece] = []
        by_block = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[by_block], np.arange(len(blocks) + 1))
        for i, (s, b) in enumerate(blocks):
            pos = by_block[bounds[i] : bounds[i + 1]]
            if len(pos) == 0:
                continue
            r = rows[pos]
            epochs[pos] = b.epochs[r]
            times[pos] = b.times[r]
            contiguous = bool(pos[-1] - pos[0] == len(pos) - 1 and np.all(np.diff(r) == 1))
            pieces.append(_Piece(s, pos, r, contiguous))
        # the definition comes from the contributing shard nearest the tip, then the latest one
        depth = {t: i for i, (t, _) in enumerate(self._chain)}
        newest = max(pieces, key=lambda p: (-depth[p.shard.timeline], p.shard.seq)).shard
        idx = _SourceIndex(steps, epochs, times, pieces, [], dict(newest.describes.get(source, {})))
        if all(p.contiguous for p in pieces):
            idx.full = [(p.shard, slice(p.first, p.end), slice(p.row0, p.row0 + p.end - p.first)) for p in pieces]
        seen: set[tuple[Any, ...]] = set()
        for p in pieces:  # metric schema across shards; a conflict is reported when that metric is read
            block = p.shard.sources[source]
            specs = [p.shard.entries[f"{source}/{m}"] for m in block.metrics]
            signature = tuple((m, e.dtype, e.shape[1:]) for m, e in zip(block.metrics, specs))
            if signature in seen:
                continue
            seen.add(signature)
            for m, e in zip(block.metrics, specs):
                known = idx.schema.get(m)
                if known is None:
                    idx.schema[m] = (e.dtype, e.shape[1:], p.shard)
                    idx.metrics.append(m)
                elif (known[0], known[1]) != (e.dtype, e.shape[1:]):
                    idx.conflicts.add(m)  # reads spanning both configurations raise
        return idx

    # ------------------------------------------------------------------ what is there
    @property
    def status(self) -> str:
        """``"empty"``, ``"running"``, or the final status (``"finished"``, ``"failed"``,
        ``"interrupted"``) of the viewed timeline's last shard."""
        return self._status

    @property
    def timeline(self) -> Optional[int]:
        """The timeline being viewed (the newest unless one was asked for); None when empty."""
        return self._tip

    def sources(self) -> list[str]:
        """Sources with visible records, in order of first appearance."""
        return list(self._index)

    def metrics(self, prefix: str = "") -> list[str]:
        """Fully qualified metric names ``"source/name"`` that start with ``prefix``."""
        return [f"{s}/{m}" for s, idx in self._index.items() for m in idx.metrics if f"{s}/{m}".startswith(prefix)]

    def _source(self, source: str) -> _SourceIndex:
        idx = self._index.get(source)
        if idx is None:
            raise UnknownMetricError(f"Run {self.path} has no source {source!r}; it has {self.sources()}.")
        return idx

    def steps(self, source: str) -> np.ndarray:
        """Visible steps of ``source``, increasing, int64."""
        return self._source(source).steps.copy()

    def epochs(self, source: str) -> np.ndarray:
        """Trainer epoch of each visible record of ``source`` (-1 when unknown)."""
        return self._source(source).epochs.copy()

    def times(self, source: str) -> np.ndarray:
        """Wall-clock time (seconds since the epoch) each record reached the writer."""
        return self._source(source).times.copy()

    def describe(self, source: str) -> dict[str, Any]:
        """The probe definition of ``source`` as stored by the newest visible shard."""
        return dict(self._source(source).describe)

    @property
    def describes(self) -> dict[str, dict[str, Any]]:
        """``{source: describe(source)}`` for every visible source."""
        return {s: self.describe(s) for s in self._index}

    def last_step(self) -> int:
        """Largest visible step over all sources, or -1 when empty."""
        return max((int(i.steps[-1]) for i in self._index.values()), default=-1)

    def tip(self) -> Branch:
        """The :class:`Branch` that continues this view: a writer opened with it appends after
        the last visible step without superseding anything."""
        return Branch(parent=-1 if self._tip is None else self._tip, fork_step=self.last_step())

    @property
    def timelines(self) -> list[dict[str, Any]]:
        """Every timeline on disk: id, parent, fork step, shards, records, step range, status,
        and whether it is part of the current view."""
        in_view = dict(self._chain)
        out = []
        for t, (parent, fork) in sorted(self._timelines.items()):
            shards = sorted((s for s in self._shards.values() if s.timeline == t), key=lambda s: s.seq)
            steps = [b.steps for s in shards for b in s.sources.values() if b.n]
            all_steps = np.concatenate(steps) if steps else np.empty(0, dtype=np.int64)
            out.append(
                {
                    "timeline": t,
                    "parent": parent,
                    "fork_step": fork,
                    "shards": len(shards),
                    "records": int(sum(s.n_records for s in shards)),
                    "first_step": int(all_steps.min()) if len(all_steps) else None,
                    "last_step": int(all_steps.max()) if len(all_steps) else None,
                    "status": shards[-1].status,
                    "in_view": t in in_view,
                    "cutoff": None if in_view.get(t, math.inf) == math.inf else int(in_view[t]),
                }
            )
        return out

    @property
    def info(self) -> dict[str, Any]:
        """Run-level facts: path, schema, status, viewed timeline, run information (from the
        viewed timeline's first shard), counts, and the shards skipped in lenient mode."""
        tip_shards = sorted((s for s in self._shards.values() if s.timeline == self._tip), key=lambda s: s.seq)
        return {
            "path": str(self.path),
            "format": fmt.FORMAT_NAME,
            "schema": fmt.SCHEMA_VERSION,
            "status": self._status,
            "timeline": self._tip,
            "n_timelines": len(self._timelines),
            "n_shards": len(self._shards),
            "n_records": {s: len(i.steps) for s, i in self._index.items()},
            "last_step": self.last_step(),
            "run": dict(tip_shards[0].run) if tip_shards else {},
            "updated": max((s.created for s in self._shards.values()), default=None),
            "skipped": [{"file": n, "problem": p} for n, p in sorted(self._skipped.items())],
        }

    # ------------------------------------------------------------------ data
    def _split(self, name: str) -> tuple[str, str, _SourceIndex]:
        if not isinstance(name, str) or "/" not in name:
            raise UnknownMetricError(
                f"Expected a fully qualified metric name 'source/name', got {name!r}; known: {self.metrics()[:20]}."
            )
        source, metric = name.split("/", 1)
        idx = self._index.get(source)
        if idx is None or metric not in idx.schema:
            raise UnknownMetricError(f"Run {self.path} has no metric {name!r}; known: {self.metrics()}.")
        return source, metric, idx

    def _range(self, idx: _SourceIndex, start: Optional[int], stop: Optional[int]) -> tuple[int, int]:
        i0 = 0 if start is None else int(np.searchsorted(idx.steps, start, side="left"))
        i1 = len(idx.steps) if stop is None else int(np.searchsorted(idx.steps, stop, side="left"))
        return i0, max(i0, i1)

    def _array(self, shard: Shard, key: str) -> np.ndarray:
        """Tensor ``key`` of ``shard`` as a verified read-only view of its memory map.

        Maps (with the views made from them) are kept for the most recently used shards only;
        an evicted map closes once no array returned earlier refers to it.
        """
        entry = self._maps.get(shard.name)
        if entry is None:
            entry = self._maps[shard.name] = (shard.open_map(), {})
            if len(self._maps) > _MAX_OPEN_MAPS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(shard.name)
        views = entry[1]
        data = views.get(key)
        if data is None:
            data = views[key] = shard.raw(key, entry[0])
        return data

    def _gather(self, source: str, metric: str, idx: _SourceIndex, i0: int, i1: int) -> tuple[np.ndarray, str]:
        """Rows ``[i0, i1)`` of one metric (storage dtype), copied out of the shards that hold them.

        Raises:
            RunLogError: the rows come from shards where the metric is missing or has another
                dtype or shape (the probe changed between sessions).
        """
        key = f"{source}/{metric}"
        dtype, shape, _ = idx.schema[metric]
        full = idx.full if i0 == 0 and i1 == len(idx.steps) and metric not in idx.conflicts else None
        if full is not None and all(key in s.entries for s, _, _ in full):
            out = np.empty((i1 - i0, *shape), dtype=_NP_DTYPE[dtype])
            for shard, out_rows, rows in full:
                out[out_rows] = self._array(shard, key)[rows]
            return out, dtype
        pieces = [p for p in idx.pieces if p.end > i0 and p.first < i1]
        first: Optional[Shard] = None
        for p in pieces:
            e = p.shard.entries.get(key)
            if e is None:
                raise RunLogError(
                    f"Metric {key} is missing from shard {p.shard.path} although that shard holds records of"
                    f" {source!r} (the probe changed between sessions). Read a step range written by one configuration."
                )
            if first is None:
                first, dtype, shape = p.shard, e.dtype, e.shape[1:]
            elif (e.dtype, e.shape[1:]) != (dtype, shape):
                raise RunLogError(
                    f"Metric {key} is {_dtype_name(e.dtype)}{list(e.shape[1:])} in {p.shard.name} but"
                    f" {_dtype_name(dtype)}{list(shape)} in"
                    f" {first.name} (the probe changed between sessions). Read a step range written by one"
                    " configuration (start=/stop=)."
                )
        out = np.empty((i1 - i0, *shape), dtype=_NP_DTYPE[dtype])
        for p in pieces:
            data = self._array(p.shard, key)
            if p.contiguous:
                a, b = max(i0, p.first), min(i1, p.end)
                r0 = p.row0 + (a - p.first)
                out[a - i0 : b - i0] = data[r0 : r0 + (b - a)]
            else:
                sel = (p.pos >= i0) & (p.pos < i1)
                out[p.pos[sel] - i0] = data[p.rows[sel]]
        return out, dtype

    def read(
        self, name: str, *, start: Optional[int] = None, stop: Optional[int] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of one metric, concatenated across shards.

        Args:
            name: ``"source/metric"``, e.g. ``"keyword/p_first"``.
            start, stop: keep steps in ``[start, stop)``; None for unbounded.

        Returns:
            ``(steps, values)``: int64 ``[n]`` and ``[n, *shape]`` in the stored dtype (bfloat16
            as float32). Both are fresh, writable arrays.

        Raises:
            UnknownMetricError: no such metric (the message lists the known ones).
            CorruptShardError: the metric's bytes in some shard fail their checksum.
            RunLogError: the requested rows span shards where the metric's dtype or shape differs.
        """
        source, metric, idx = self._split(name)
        i0, i1 = self._range(idx, start, stop)
        raw, dtype = self._gather(source, metric, idx, i0, i1)
        return idx.steps[i0:i1].copy(), fmt.to_public(raw, dtype)

    def read_labelled(
        self, name: str, *, start: Optional[int] = None, stop: Optional[int] = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Steps and ``{pair / sample / format name: values}`` of one metric
        (:func:`probes.runlog.views.read_labelled`)."""
        from probes.runlog.views import read_labelled

        return read_labelled(self, name, start=start, stop=stop)

    def frame(self, source: str, metrics: Optional[list[str]] = None) -> Any:
        """A pandas DataFrame of ``source`` with (metric, element) columns (needs pandas;
        :func:`probes.runlog.views.frame`)."""
        from probes.runlog.views import frame

        return frame(self, source, metrics)

    def _repr_html_(self) -> str:
        from probes.runlog.views import run_html

        return run_html(self)

    def read_many(
        self, prefix: str = "", *, start: Optional[int] = None, stop: Optional[int] = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """:meth:`read` for every metric whose name starts with ``prefix``."""
        return {name: self.read(name, start=start, stop=stop) for name in self.metrics(prefix)}

    def records(
        self,
        source: Optional[str | Sequence[str]] = None,
        *,
        start: Optional[int] = None,
        stop: Optional[int] = None,
        chunk: int = 1024,
    ) -> Iterator[Record]:
        """Rebuild :class:`~probes.core.records.Record` objects in step order, for replay.

        Args:
            source: one source, several, or None for all (merged by step, then source order).
            start, stop: keep steps in ``[start, stop)``.
            chunk: records read from disk at a time (bounds memory).

        Yields:
            Records whose tensors are CPU torch tensors of the stored dtype (bfloat16 kept), with
            ``extra["time"]``: the wall-clock time the record reached the writer.
        """
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"Expected `chunk` to be a positive int, got {chunk!r}.")
        names = self.sources() if source is None else [source] if isinstance(source, str) else list(source)
        for s in names:
            self._source(s)
        iters = [self._records_of(s, start, stop, chunk) for s in names]
        if len(iters) == 1:
            yield from iters[0]
            return
        order = {s: i for i, s in enumerate(names)}
        yield from heapq.merge(*iters, key=lambda r: (r.step, order[r.source]))

    def _records_of(self, source: str, start: Optional[int], stop: Optional[int], chunk: int) -> Iterator[Record]:
        from probes.core.records import Record

        idx = self._index[source]
        i0, i1 = self._range(idx, start, stop)
        for c0 in range(i0, i1, chunk):
            c1 = min(i1, c0 + chunk)
            cols = {}
            for m in idx.metrics:
                raw, dtype = self._gather(source, m, idx, c0, c1)
                cols[m] = _to_torch(raw, dtype)
            for k in range(c1 - c0):
                i = c0 + k
                tensors = {m: t[k] for m, t in cols.items()}
                yield Record(int(idx.steps[i]), source, tensors, int(idx.epochs[i]), {"time": float(idx.times[i])})


def _short(name: str) -> str:
    return repr(name[:80] + ("..." if len(name) > 80 else ""))


def _dtype_name(st_dtype: str) -> str:
    return fmt.DTYPES[st_dtype][1]


def _to_torch(raw: np.ndarray, dtype: str) -> Any:
    import torch

    if dtype == "BF16":
        return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
    if dtype in ("U16", "U32", "U64"):
        signed = {"U16": (np.int16, torch.uint16), "U32": (np.int32, torch.uint32), "U64": (np.int64, torch.uint64)}
        np_t, torch_t = signed[dtype]
        return torch.from_numpy(raw.view(np_t)).view(torch_t)
    return torch.from_numpy(raw)
