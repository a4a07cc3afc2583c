"""The documented record schema of each probe type (``docs/records.md``), as data and one check.

Both sides use :func:`schema_problem`: the writer refuses a record that breaks its probe type's
schema at ``write()``, and the reader refuses (strict) or skips (lenient) a shard whose blocks
break it, so summary, replay, plot and export can index the metrics of a known probe type without
guarding every access. Metrics not listed here are free; listed metrics that are absent are fine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from probes.runlog.labels import kind_of

__all__ = ["SCHEMAS", "schema_problem"]

FLOAT = frozenset({"F16", "BF16", "F32", "F64"})
INT = frozenset({"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"})
NUMBER = FLOAT | INT
BOOL = frozenset({"BOOL"})

# kind -> metric -> (allowed safetensors dtypes, per-record ndim); ndim-1 metrics share one length
SCHEMAS: dict[str, dict[str, tuple[frozenset[str], int]]] = {
    "keyword": {
        "p_first": (NUMBER, 1),
        "logp_first": (NUMBER, 1),
        "logp_seq": (NUMBER, 1),
        "rank": (NUMBER, 1),
        "nonfinite": (BOOL | NUMBER, 1),
    },
    "priming": {
        **{
            m: (NUMBER, 1)
            for m in (
                "p_learn", "p_before", "s_mem", "s_prime", "log10_s_mem", "log10_s_prime",
                "median_prime_ratio", "delta_p_learn", "delta_p_prime", "exposures",
                "log10_s_mem_seq", "log10_s_prime_seq", "log10_p_before_seq",
                "log10_s_mem_first", "log10_s_prime_first", "log10_p_before_first",
            )
        },
        "nonfinite": (BOOL | NUMBER, 1),
        "surprising": (BOOL | NUMBER, 1),
        "has_baseline": (BOOL | NUMBER, 1),
    },
    "format": {
        "dist": (NUMBER, 1),
        "mean_reward": (NUMBER, 1),
        "accuracy": (NUMBER, 1),
        **{
            m: (NUMBER, 0)
            for m in (
                "entropy_nats", "entropy_bits", "norm_entropy", "eff_formats", "dominant",
                "dominant_share", "kl_from_first", "unclassified", "n",
            )
        },
        "collapsed": (BOOL | NUMBER, 0),
    },
}

_ELEMENTS = {"keyword": "pairs", "priming": "samples", "format": "formats + 'other'"}


def _expected_length(kind: str, describe: Mapping[str, Any]) -> Optional[int]:
    if kind == "keyword":
        probe_set = describe.get("probe_set")
        items = probe_set.get("pairs") if isinstance(probe_set, Mapping) else None
        extra = 0
    elif kind == "priming":
        items, extra = describe.get("samples"), 0
    else:
        items, extra = describe.get("formats"), 1
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        return len(items) + extra
    return None


def schema_problem(describe: Mapping[str, Any], metrics: Mapping[str, tuple[str, Sequence[int]]]) -> Optional[str]:
    """Why ``metrics`` (name -> (safetensors dtype, per-record shape)) break the documented
    schema of the probe type named by ``describe["type"]``, or None when they do not (and for
    probe types without a documented schema)."""
    kind = kind_of(describe) if isinstance(describe, Mapping) else "other"
    schema = SCHEMAS.get(kind)
    if schema is None:
        return None
    length: Optional[tuple[str, int]] = None
    want = _expected_length(kind, describe)
    for name, (dtype, shape) in metrics.items():
        rule = schema.get(name)
        if rule is None:
            continue
        allowed, ndim = rule
        if dtype not in allowed:
            return (
                f"{describe.get('type')} metric {name!r} has dtype {dtype}, the documented schema allows"
                f" {sorted(allowed)}"
            )
        if len(shape) != ndim:
            what = "a scalar per record" if ndim == 0 else f"a vector of {_ELEMENTS[kind]} per record"
            return f"{describe.get('type')} metric {name!r} has per-record shape {list(shape)}, but it is {what}"
        if ndim == 1:
            if length is not None and shape[0] != length[1]:
                return (
                    f"{describe.get('type')} metrics {length[0]!r} and {name!r} have {length[1]} and {shape[0]}"
                    f" elements; every per-element metric has one element per {_ELEMENTS[kind][:-1]}"
                )
            length = (name, int(shape[0]))
            if want is not None and shape[0] != want:
                return (
                    f"{describe.get('type')} metric {name!r} has {shape[0]} elements but describe() lists"
                    f" {want} {_ELEMENTS[kind]}"
                )
    return None
