"""The probe-kind registry: everything the shared layers know about one probe type.

A probe type (``describe()["type"]``, e.g. ``"KeywordProbe"``) declares one :class:`ProbeKind` in
its own package's ``view.py``: its record schema and element labels, its ``probes summary``
section, its dashboard panel, its ``probes plot`` panel, its ``probes replay`` line and its testing
assertions. The run log, the console, the CLI and ``probes.testing`` look a source's kind up with
:func:`get` (or :func:`of` a ``describe()``) and call what it declares; none of them names a probe
type. A type nobody declared gets :data:`GENERIC`: positional labels, the generic metric table and
replay line, no panel, no plot.

Built-in kinds are imported lazily, on the first lookup, from :data:`BUILTIN_PACKAGES` (each
package's ``view`` module calls :func:`register`). Importing this module imports nothing heavy:
no Lightning, rich or matplotlib. ``docs/kinds.md`` shows how to add a kind.

Example::

    from probes.core import kinds

    kinds.register(kinds.ProbeKind("ToyProbe", "toy", schema={"score": kinds.Metric(kinds.NUMBER, ("items",))},
                                   axes={"items": lambda d: d.get("items")}))
    kinds.get("ToyProbe").labels({"items": ["a", "b"]}, "items")  # ['a', 'b']
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

if TYPE_CHECKING:  # annotations only: importing them would load numpy, matplotlib and the run-log reader
    import numpy as np
    from matplotlib.axes import Axes

    from probes.console.states import DashboardOptions, SourceState
    from probes.runlog.reader import RunReader
    from probes.testing.collect import SourceData

__all__ = [
    "BOOL",
    "BUILTIN_PACKAGES",
    "FLAG",
    "FLOAT",
    "GENERIC",
    "INT",
    "NUMBER",
    "Expectation",
    "Metric",
    "ProbeKind",
    "get",
    "kinds",
    "metrics",
    "of",
    "register",
    "unregister",
]

#: the packages whose ``view`` module registers a built-in kind; the one list of them
BUILTIN_PACKAGES = (
    "probes.keyword", "probes.priming", "probes.formats", "probes.choice", "probes.ifd", "probes.frequency",
    "probes.updates", "probes.thought", "probes.frontier",
)

FLOAT = frozenset({"F16", "BF16", "F32", "F64"})
INT = frozenset({"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"})
NUMBER = FLOAT | INT
BOOL = frozenset({"BOOL"})
FLAG = BOOL | NUMBER  # a flag may be stored as bool or as 0/1

Describe = Mapping[str, Any]
Labeller = Callable[[Describe], Optional[Sequence[Any]]]

# keys of a `probes summary` source entry that a kind's section key must not shadow
_RESERVED_KEYS = frozenset({"source", "type", "records", "first_step", "last_step", "metrics"})


@dataclass(frozen=True)
class Metric:
    """A documented metric: the safetensors dtypes it may have and one axis name per dimension of
    one record (``()`` for a scalar; ``("pairs",)`` for one value per pair)."""

    dtypes: frozenset[str]
    axes: tuple[str, ...] = ()


def metrics(names: Iterable[str], dtypes: frozenset[str], axes: tuple[str, ...] = ()) -> dict[str, Metric]:
    """The same :class:`Metric` rule for several names, to spread into a schema."""
    rule = Metric(dtypes, tuple(axes))
    return {name: rule for name in names}


@dataclass(frozen=True)
class Expectation:
    """A check of one probe type's records while training runs (``probes.testing.ProbeExpectations``).

    ``kind`` is the ``describe()["type"]`` it reads; :meth:`check` gets that source's readings so
    far (a :class:`~probes.testing.collect.SourceData`) and returns a failure message or None.
    Defined here, not in ``probes.testing``, so that a kind's ``view.py`` can subclass it without
    importing Lightning.
    """

    kind = ""

    @property
    def label(self) -> str:
        return type(self).__name__

    def check(self, data: SourceData) -> Optional[str]:
        """The failure message of :meth:`verify` on ``data`` (an :class:`AssertionError`'s text), or
        None when it holds or when the readings have not reached ``by_step`` yet (a dataclass
        field of the subclass; 0 when it has none)."""
        if int(data.steps[-1]) < int(getattr(self, "by_step", 0)):
            return None
        try:
            self.verify({data.source: data})
        except AssertionError as e:
            return str(e)
        return None

    def verify(self, data: Mapping[str, SourceData]) -> None:  # pragma: no cover - abstract
        """Raise :class:`AssertionError` when the expectation fails on ``data`` (one source): a
        subclass calls its kind's assertion here."""
        raise NotImplementedError


@dataclass(frozen=True)
class ProbeKind:
    """What one probe type declares to the shared layers. Every view is optional.

    Args:
        type_name: ``describe()["type"]`` of the probe, e.g. ``"KeywordProbe"``.
        key: short name: the key of its section in ``probes summary --json`` (``"keyword"``).
        schema: metric name -> :class:`Metric`; checked by the run-log writer and reader. Metrics
            not listed are free; listed metrics that are absent are fine.
        axes: axis name (plural noun, ``"pairs"``) -> function ``describe -> names`` (None when
            ``describe`` does not say); names label the elements of vector metrics.
        summarize: ``(run, source, describe, limit) -> dict``: the JSON section of ``probes
            summary`` (``{}``: none); ``limit`` caps rows per table.
        summary_lines: ``section -> lines``: its text form.
        state: ``(source, describe, options) -> SourceState``: the dashboard's host state.
        panel: ``(state, options) -> renderable``, built now (the dashboard catches its errors).
        column: ``"main"`` (left when the console is wide) or ``"side"``.
        status: ``(state, options) -> str``: the part of the plain one-line summary.
        plot: ``(axes, run, source, max_series) -> None``: draws one matplotlib panel.
        plot_needs: metrics the plot reads; a source without one of them is not plotted.
        replay: ``(tensors, describe) -> str or None``: one ``probes replay`` line for a record's
            tensors (numpy); None falls back to the generic line.
        assertions: name -> function raising ``AssertionError`` (``probes.testing`` finds them).
        expectations: :class:`Expectation` subclasses for ``ProbeExpectations``.

    Raises:
        ValueError: a bad key or column, a schema axis that ``axes`` does not declare, or a
            ``panel`` or ``status`` without ``state``, ``summary_lines`` without ``summarize``.
    """

    type_name: str
    key: str
    schema: Mapping[str, Metric] = field(default_factory=dict)
    axes: Mapping[str, Labeller] = field(default_factory=dict)
    summarize: Optional[Callable[[RunReader, str, Describe, int], dict[str, Any]]] = None
    summary_lines: Optional[Callable[[dict[str, Any]], list[str]]] = None
    state: Optional[Callable[[str, Describe, DashboardOptions], SourceState]] = None
    panel: Optional[Callable[[Any, DashboardOptions], Any]] = None  # returns a rich renderable
    column: str = "side"
    status: Optional[Callable[[Any, DashboardOptions], str]] = None
    plot: Optional[Callable[[Axes, RunReader, str, int], None]] = None
    plot_needs: tuple[str, ...] = ()
    replay: Optional[Callable[[Mapping[str, np.ndarray], Describe], Optional[str]]] = None
    assertions: Mapping[str, Callable[..., None]] = field(default_factory=dict)
    expectations: tuple[type[Expectation], ...] = ()

    #: the view functions :meth:`from_views` finds by name in a view module
    CONVENTIONAL: ClassVar[tuple[str, ...]] = ("summarize", "summary_lines", "status", "plot", "replay")

    @classmethod
    def from_views(cls, type_name: str, key: str, views: Mapping[str, Any], **fields: Any) -> ProbeKind:
        """A kind whose ``summarize``, ``summary_lines``, ``status``, ``plot`` and ``replay`` are the
        functions ``_summarize``, ``_summary_lines``, ... of a view module's namespace ``views``
        (``globals()``), unless given in ``fields``; the other fields as for the constructor."""
        for name in cls.CONVENTIONAL:
            if name not in fields and callable(views.get(f"_{name}")):
                fields[name] = views[f"_{name}"]
        return cls(type_name, key, **fields)

    def __post_init__(self) -> None:
        if not isinstance(self.type_name, str):
            raise ValueError(f"Expected `type_name` to be the probe's describe()['type'], got {self.type_name!r}.")
        if not (isinstance(self.key, str) and self.key.isidentifier()) or self.key in _RESERVED_KEYS:
            raise ValueError(
                f"Expected `key` to be a short identifier such as 'keyword' (not one of {sorted(_RESERVED_KEYS)}),"
                f" got {self.key!r}."
            )
        if self.column not in ("main", "side"):
            raise ValueError(f"Expected `column` to be 'main' or 'side', got {self.column!r}.")
        undeclared = sorted({a for m in self.schema.values() for a in m.axes} - set(self.axes))
        if undeclared:
            raise ValueError(f"{self.type_name}: schema axes {undeclared} are not declared in `axes`.")
        for view, needs, what in (
            (self.panel, self.state, "`panel` needs `state`"),
            (self.status, self.state, "`status` needs `state`"),
            (self.summary_lines, self.summarize, "`summary_lines` needs `summarize`"),
        ):
            if view is not None and needs is None:
                raise ValueError(f"{self.type_name}: {what}.")
        object.__setattr__(self, "plot_needs", tuple(self.plot_needs))
        object.__setattr__(self, "expectations", tuple(self.expectations))

    def _items(self, describe: Describe, axis: str) -> Any:
        fn = self.axes.get(axis)
        if fn is None or not isinstance(describe, Mapping):
            return None
        try:
            return fn(describe)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):  # a hostile describe()
            return None

    def labels(self, describe: Describe, axis: str) -> Optional[list[str]]:
        """The element names of ``axis`` from ``describe`` (None when it does not say). Names come
        from strings, or mappings with a string ``name``; anything else is its position."""
        return _names(self._items(describe, axis))

    def length(self, describe: Describe, axis: str) -> Optional[int]:
        """How many elements ``describe`` lists along ``axis`` (None when it does not say): the
        length of :meth:`labels`, without building the names."""
        items = self._items(describe, axis)
        return len(items) if isinstance(items, Sequence) and not isinstance(items, (str, bytes)) else None

    def element_labels(self, describe: Describe, shape: Sequence[int], metric: Optional[str] = None) -> list[str]:
        """One label per element of a metric of per-record ``shape`` (row-major order).

        ``[""]`` for a scalar; the axis names where the metric's schema (or, without ``metric``,
        the one declared axis of that length) has as many names as the dimension; positions
        (``"3"``, ``"1,2"``) otherwise.
        """
        shape = tuple(int(n) for n in shape)
        if shape == ():
            return [""]
        if 0 in shape:  # no elements (never materialise the other dimensions' ranges)
            return []
        rule = self.schema.get(metric) if metric is not None else None
        per_axis: list[list[str]] = []
        for d, n in enumerate(shape):
            names = None
            if rule is not None and len(rule.axes) == len(shape):
                names = self.labels(describe, rule.axes[d])
            elif rule is None and len(shape) == 1:  # the first declared axis with that many names
                candidates = (self.labels(describe, a) for a in self.axes)
                names = next((x for x in candidates if x is not None and len(x) == n), None)
            per_axis.append(names if names is not None and len(names) == n else [str(i) for i in range(n)])
        if len(per_axis) == 1:
            return per_axis[0]
        import itertools

        return [",".join(idx) for idx in itertools.product(*per_axis)]


def _names(items: Any) -> Optional[list[str]]:
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        return None
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            out.append(item["name"])
        else:
            out.append(str(i))
    return out


GENERIC = ProbeKind("", "other")
"""The kind of a probe type nobody registered: positional labels, no schema, no section, panel,
plot or assertion (the shared layers show its metrics generically)."""

_KINDS: dict[str, ProbeKind] = {}
_LOCK = threading.Lock()  # guards _KINDS; never held while importing
_loaded = False
_local = threading.local()  # .loading: this thread is importing the built-in views


def _load_builtins() -> None:
    """Import every built-in ``view`` module once (each registers its kind).

    A view that registers its kind while the views load does not start another load; the lock is
    not held while importing (Python's import locks serialise the imports themselves), so two
    threads that import views at the same time cannot deadlock on it.
    """
    global _loaded
    if _loaded or getattr(_local, "loading", False):
        return
    _local.loading = True
    try:
        for package in BUILTIN_PACKAGES:
            importlib.import_module(f"{package}.view")
        _loaded = True
    finally:
        _local.loading = False


def register(kind: ProbeKind, *, replace: bool = False) -> ProbeKind:
    """Declare ``kind`` for its probe type; returns it (so a view can write ``KIND = register(...)``).

    Raises:
        TypeError: ``kind`` is not a :class:`ProbeKind`.
        ValueError: an empty type name; the type or the key already declared by another kind
            (pass ``replace=True`` to replace the type's kind).
    """
    if not isinstance(kind, ProbeKind):
        raise TypeError(f"Expected a probes.core.kinds.ProbeKind, got {type(kind).__name__}.")
    if not kind.type_name:
        raise ValueError("Expected `type_name` to be the probe's non-empty describe()['type'], got ''.")
    _load_builtins()  # so that a kind for a built-in type is refused unless it replaces it
    with _LOCK:
        old = _KINDS.get(kind.type_name)
        if old is not None and old is not kind and not replace:
            raise ValueError(
                f"Probe type {kind.type_name!r} already has a kind (key {old.key!r}); pass replace=True to replace it."
            )
        clash = [k.type_name for k in _KINDS.values() if k.key == kind.key and k.type_name != kind.type_name]
        if clash:
            raise ValueError(f"Key {kind.key!r} is already used by the kind of {clash[0]!r}; choose another `key`.")
        _KINDS[kind.type_name] = kind
    return kind


def unregister(type_name: str) -> Optional[ProbeKind]:
    """Remove the kind of ``type_name`` (tests that register a kind use this to clean up); returns it."""
    _load_builtins()
    with _LOCK:
        return _KINDS.pop(type_name, None)


def get(type_name: Any) -> ProbeKind:
    """The kind declared for ``type_name``, or :data:`GENERIC`."""
    _load_builtins()
    return _KINDS.get(type_name, GENERIC) if isinstance(type_name, str) else GENERIC


def of(describe: Any) -> ProbeKind:
    """The kind of the probe a ``describe()`` mapping describes (:data:`GENERIC` for anything else)."""
    return get(describe.get("type")) if isinstance(describe, Mapping) else GENERIC


def kinds() -> list[ProbeKind]:
    """Every declared kind, in the order they were registered (the built-in ones first)."""
    _load_builtins()
    with _LOCK:
        return list(_KINDS.values())
