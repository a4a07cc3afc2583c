"""The documented record schema of each probe type (``docs/records.md``), checked in one place.

Each probe kind (:mod:`probes.core.kinds`) declares its schema in its own package: metric ->
allowed safetensors dtypes and one axis per dimension (pairs, samples, benchmarks...). Both sides
use :func:`schema_problem`: the writer refuses a record that breaks its probe type's schema at
``write()``, and the reader refuses (strict) or skips (lenient) a shard whose blocks break it, so
summary, replay, plot and export can index the metrics of a known probe type without guarding
every access. Metrics not listed are free; listed metrics that are absent are fine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from probes.core import kinds
from probes.core.kinds import BOOL, FLOAT, INT, NUMBER

__all__ = ["BOOL", "FLOAT", "INT", "NUMBER", "schema_problem"]


def _singular(axis: str) -> str:
    return axis[:-1] if axis.endswith("s") else axis


def schema_problem(describe: Mapping[str, Any], metrics: Mapping[str, tuple[str, Sequence[int]]]) -> Optional[str]:
    """Why ``metrics`` (name -> (safetensors dtype, per-record shape)) break the documented
    schema of the probe type named by ``describe["type"]``, or None when they do not (and for
    probe types without a documented schema).

    Every dimension of a metric is one of its kind's axes: metrics on the same axis have as many
    elements as each other, and as ``describe()`` names when it names them.
    """
    kind = kinds.of(describe)
    if not kind.schema:
        return None
    what = describe.get("type")
    lengths: dict[str, tuple[str, int]] = {}  # axis -> (first metric seen on it, its length)
    named: dict[str, Optional[int]] = {}  # axis -> how many elements describe() names (None: it does not say)
    for name, (dtype, shape) in metrics.items():
        rule = kind.schema.get(name)
        if rule is None:
            continue
        if dtype not in rule.dtypes:
            return f"{what} metric {name!r} has dtype {dtype}, the documented schema allows {sorted(rule.dtypes)}"
        if len(shape) != len(rule.axes):
            expected = (
                "a scalar per record"
                if not rule.axes
                else "a vector of " + rule.axes[0] + " per record"
                if len(rule.axes) == 1
                else f"a {' x '.join(rule.axes)} array per record"
            )
            return f"{what} metric {name!r} has per-record shape {list(shape)}, but it is {expected}"
        for axis, n in zip(rule.axes, shape):
            seen = lengths.get(axis)
            if seen is not None and n != seen[1]:
                return (
                    f"{what} metrics {seen[0]!r} and {name!r} have {seen[1]} and {n} elements; every metric over"
                    f" {axis} has one element per {_singular(axis)}"
                )
            lengths[axis] = (name, int(n))
            if axis not in named:
                named[axis] = kind.length(describe, axis)
            want = named[axis]
            if want is not None and n != want:
                return f"{what} metric {name!r} has {n} elements but describe() lists {want} {axis}"
    return None


def __getattr__(name: str) -> Any:
    if name == "SCHEMAS":  # short kind name -> {metric: Metric}, as a dict (read from the registry)
        return {k.key: dict(k.schema) for k in kinds.kinds() if k.schema}
    raise AttributeError(f"module 'probes.runlog.kinds' has no attribute {name!r}")
