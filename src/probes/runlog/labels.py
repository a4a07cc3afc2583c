"""Names for the elements of vector metrics, taken from a probe's ``describe()``.

Each probe kind (:mod:`probes.core.kinds`) declares its element axes (pairs, samples, formats +
``other``, benchmarks, questions...) and how ``describe()`` names them; the metric-name contract
(``docs/records.md``) fixes the element order. Types without a kind get positional labels.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from probes.core import kinds

if TYPE_CHECKING:
    from probes.formats.view import format_names
    from probes.keyword.view import pair_groups, pair_names
    from probes.priming.view import sample_names

__all__ = [
    "element_labels",
    "format_names",
    "kind_of",
    "pair_groups",
    "pair_names",
    "safe_file_stem",
    "sample_names",
]

# label functions of single kinds, now defined in their packages (kept importable from here)
_MOVED = {
    "pair_names": "probes.keyword.view",
    "pair_groups": "probes.keyword.view",
    "sample_names": "probes.priming.view",
    "format_names": "probes.formats.view",
}


def kind_of(describe: Mapping[str, Any]) -> str:
    """The short name of the probe kind of ``describe()["type"]`` (``"keyword"``, ``"priming"``,
    ``"format"``, ``"benchmark"``, ``"ifd"``...), ``"other"`` for a type without a kind."""
    return kinds.of(describe).key


def element_labels(describe: Mapping[str, Any], shape: Sequence[int], metric: Optional[str] = None) -> list[str]:
    """One label per element of a metric of per-record ``shape`` (row-major order).

    Returns ``[""]`` for a scalar, the probe's names when the metric's axes (from its kind's schema
    when ``metric`` is given, else the one axis of that length) match them, and ``"i"`` / ``"i,j"``
    positions otherwise.
    """
    return kinds.of(describe).element_labels(describe, shape, metric)


def safe_file_stem(name: str, taken: set[str]) -> str:
    """A file-name stem for ``name`` (a source): letters, digits, ``._-`` kept, anything else
    (``/``, NUL, control characters, surrogates...) as ``_``; unique among ``taken`` (added)."""
    stem = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in "._-")) else "_" for ch in name)[:100]
    if not stem or set(stem) <= {"."}:
        stem = "source"
    candidate, k = stem, 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{stem}-{k}"
    taken.add(candidate.lower())
    return candidate


def __getattr__(name: str) -> Any:
    if name == "KINDS":  # type name -> short name, as a dict (read from the registry)
        return {k.type_name: k.key for k in kinds.kinds()}
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'probes.runlog.labels' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
