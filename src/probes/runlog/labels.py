"""Names for the elements of vector metrics, taken from a probe's ``describe()``.

The metric-name contract (``docs/records.md``) fixes the element order of each probe type:
pairs for ``KeywordProbe``, samples for ``PrimingProbe``, formats plus ``other`` for
``FormatProbe``. Anything else gets positional labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

__all__ = ["element_labels", "format_names", "kind_of", "pair_groups", "pair_names", "sample_names"]

KINDS = {"KeywordProbe": "keyword", "PrimingProbe": "priming", "FormatProbe": "format"}


def kind_of(describe: Mapping[str, Any]) -> str:
    """``"keyword"``, ``"priming"``, ``"format"``, or ``"other"`` from ``describe()["type"]``."""
    return KINDS.get(str(describe.get("type", "")), "other")


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


def pair_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Pair names of a KeywordProbe, in metric order."""
    probe_set = describe.get("probe_set")
    return _names(probe_set.get("pairs")) if isinstance(probe_set, Mapping) else None


def pair_groups(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Pair groups of a KeywordProbe ("" when a pair has none), in metric order."""
    probe_set = describe.get("probe_set")
    pairs = probe_set.get("pairs") if isinstance(probe_set, Mapping) else None
    if not isinstance(pairs, Sequence):
        return None
    return [str(p.get("group", "")) if isinstance(p, Mapping) else "" for p in pairs]


def sample_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Sample names of a PrimingProbe, in metric order."""
    return _names(describe.get("samples"))


def format_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Format names of a FormatProbe plus the final ``"other"`` bucket."""
    names = _names(describe.get("formats"))
    return None if names is None else [*names, "other"]


def element_labels(describe: Mapping[str, Any], shape: Sequence[int]) -> list[str]:
    """One label per element of a metric of per-record ``shape`` (row-major order).

    Returns ``[""]`` for a scalar, the probe's names when a 1-d metric matches them, and
    ``"i"`` / ``"i,j"`` positions otherwise.
    """
    shape = tuple(shape)
    if shape == ():
        return [""]
    if 0 in shape:  # no elements (never materialise the other dimensions' ranges)
        return []
    if len(shape) == 1:
        kind = kind_of(describe)
        names = {"keyword": pair_names, "priming": sample_names, "format": format_names}.get(kind, lambda d: None)(
            describe
        )
        if names is not None and len(names) == shape[0]:
            return names
        return [str(i) for i in range(shape[0])]
    import itertools

    return [",".join(map(str, idx)) for idx in itertools.product(*(range(n) for n in shape))]


__all__ += ["safe_file_stem"]


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
