"""Host-side state of one record source, per probe type: what the panels need and nothing more.

Each state ingests host records (see :mod:`probes.console.host`) and returns the alerts they
raise. States keep the latest reading, the first one (as a baseline) and a bounded
:class:`~probes.console.history.History` for sparklines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from probes.console.history import History
from probes.records import Record

__all__ = [
    "FormatState",
    "KeywordState",
    "NewAlert",
    "OtherState",
    "PrimingState",
    "SourceState",
    "state_for",
]

_LN10 = math.log(10.0)
KeywordMetric = Literal["p_seq", "p_first"]


@dataclass(frozen=True)
class NewAlert:
    """An alert raised while ingesting a record; ``key`` groups repeats of the same problem."""

    key: str
    text: str
    step: int
    level: str = "error"


def _names(items: Any, what: str) -> list[str] | None:
    """Display names of ``describe`` entries (strings, or mappings with a ``name``)."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        return None
    names = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping) and "name" in item:
            names.append(str(item["name"]))
        else:
            names.append(f"{what}{i}")
    return names


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().reshape(-1).double().tolist()]


def _scalar(tensors: Mapping[str, torch.Tensor], name: str) -> float:
    t = tensors.get(name)
    if t is None or t.numel() == 0:
        return math.nan
    return float(t.reshape(-1)[0].double())


def _nonfinite(source: str, name: str, t: torch.Tensor | None, labels: Sequence[str], step: int) -> list[NewAlert]:
    """One alert naming up to three entries of ``t`` that are NaN or infinite."""
    if t is None or not t.is_floating_point():
        return []
    bad = ~torch.isfinite(t.reshape(-1))
    n = int(bad.sum())
    if n == 0:
        return []
    idx = bad.nonzero().reshape(-1).tolist()[:3]
    which = ", ".join(labels[i] if i < len(labels) else f"#{i}" for i in idx)
    more = f" and {n - len(idx)} more" if n > len(idx) else ""
    text = f"{source}: NaN/inf in {name} ({which}{more})"
    return [NewAlert(f"{source}/{name}/nonfinite", text, step)]


class SourceState:
    """What the dashboard keeps about one source. Subclasses handle one probe type.

    Args:
        source: the source name.
        describe: the probe's ``describe()`` mapping.
        history: points kept for sparklines.
    """

    type_name: ClassVar[str] = ""

    def __init__(self, source: str, describe: Mapping[str, Any], *, history: int = 64) -> None:
        self.source = source
        self.describe = dict(describe)
        self.history_capacity = history
        self.step = -1
        self.epoch = -1
        self.n_records = 0

    @property
    def has_data(self) -> bool:
        """True once a record has been ingested."""
        return self.n_records > 0

    def ingest(self, record: Record) -> list[NewAlert]:
        """Take in one host record; returns the alerts it raises."""
        alerts = self._ingest(record.tensors, record.step)
        self.step = record.step
        self.epoch = record.epoch
        self.n_records += 1
        return alerts

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        return []


class OtherState(SourceState):
    """A source of a type the dashboard has no panel for: only counted."""


class KeywordState(SourceState):
    """Keyword probabilities: baseline (first reading), current reading and history, as log10 p.

    Args:
        source, describe, history: see :class:`SourceState`.
        metric: ``"p_seq"`` (chained probability of all keyword tokens, from ``logp_seq``) or
            ``"p_first"`` (first keyword token).
    """

    type_name = "KeywordProbe"

    def __init__(
        self, source: str, describe: Mapping[str, Any], *, history: int = 64, metric: KeywordMetric = "p_seq"
    ) -> None:
        super().__init__(source, describe, history=history)
        probe_set = self.describe.get("probe_set")
        pairs = probe_set.get("pairs") if isinstance(probe_set, Mapping) else None
        self.names = _names(pairs, "pair") or []
        self.metric = metric
        self.base: torch.Tensor | None = None
        self.base_step = -1
        self.current: torch.Tensor | None = None
        self.log10_p: History[torch.Tensor] = History(history)

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        if self.metric == "p_seq":
            lp = tensors["logp_seq"].detach().reshape(-1).double() / _LN10
        else:
            lp = tensors["p_first"].detach().reshape(-1).double().log10()
        if len(self.names) != lp.numel():
            self.names = [*self.names, *(f"pair{i}" for i in range(len(self.names), lp.numel()))][: lp.numel()]
        alerts = []
        for name in ("p_first", "logp_first", "logp_seq"):
            alerts += _nonfinite(self.source, name, tensors.get(name), self.names, step)
        if self.base is None or self.base.numel() != lp.numel():
            self.base, self.base_step = lp, step
        self.current = lp
        self.log10_p.append(step, lp)
        return alerts

    def top(self, n: int) -> list[tuple[str, float, float, list[float]]]:
        """The ``n`` pairs whose probability moved most (non-finite first), as
        ``(name, p, baseline p, log10 p history)``."""
        if self.current is None or self.base is None:
            return []
        change = (self.current - self.base).abs()
        change = torch.where(torch.isfinite(change), change, torch.full_like(change, math.inf))
        order = torch.sort(change, descending=True, stable=True).indices[:n].tolist()
        _, rows = self.log10_p.series()
        hist = torch.stack(rows)[:, order] if rows else None
        out = []
        for j, i in enumerate(order):
            series = _floats(hist[:, j]) if hist is not None else []
            out.append((self.names[i], 10.0 ** float(self.current[i]), 10.0 ** float(self.base[i]), series))
        return out


class PrimingState(SourceState):
    """Priming and memorization per learning sample: the latest reading and the s_prime history."""

    type_name = "PrimingProbe"

    def __init__(self, source: str, describe: Mapping[str, Any], *, history: int = 64) -> None:
        super().__init__(source, describe, history=history)
        self.names = _names(self.describe.get("samples"), "sample") or []
        self.latest: dict[str, list[float]] = {}
        self.log10_s_prime: History[list[float]] = History(history)

    @property
    def threshold(self) -> float | None:
        """The probe's surprise threshold, when its ``describe`` gives one."""
        value = self.describe.get("threshold")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.latest = {k: _floats(v) for k, v in tensors.items()}
        n = max((len(v) for v in self.latest.values()), default=0)
        if len(self.names) < n:
            self.names += [f"sample{i}" for i in range(len(self.names), n)]
        alerts = _nonfinite(self.source, "p_learn", tensors.get("p_learn"), self.names, step)
        p_before, has_base = tensors.get("p_before"), tensors.get("has_baseline")
        if p_before is not None and has_base is not None and p_before.is_floating_point():
            masked = torch.where(has_base.reshape(-1).bool(), p_before.reshape(-1), torch.zeros(()))
            alerts += _nonfinite(self.source, "p_before", masked, self.names, step)
        if "log10_s_prime" in self.latest:
            self.log10_s_prime.append(step, self.latest["log10_s_prime"])
        elif "s_prime" in self.latest:
            self.log10_s_prime.append(step, [math.log10(v) if v > 0 else math.nan for v in self.latest["s_prime"]])
        return alerts

    def value(self, name: str, i: int) -> float:
        """Latest value of metric ``name`` for sample ``i`` (NaN when absent)."""
        values = self.latest.get(name)
        return values[i] if values is not None and i < len(values) else math.nan

    def trend(self, i: int) -> list[float]:
        """History of log10 s_prime for sample ``i``."""
        return [row[i] if i < len(row) else math.nan for row in self.log10_s_prime.series()[1]]


class FormatState(SourceState):
    """Format distribution: latest reading, entropy history and the collapse detector's state."""

    type_name = "FormatProbe"

    def __init__(self, source: str, describe: Mapping[str, Any], *, history: int = 64) -> None:
        super().__init__(source, describe, history=history)
        formats = _names(self.describe.get("formats"), "format") or []
        other = self.describe.get("other")
        self.other_name = other if isinstance(other, str) and other else "other"
        self.names = [*formats, self.other_name]
        self.latest: dict[str, list[float]] = {}
        self.entropy_bits: History[float] = History(history)
        self.collapsed = False
        self.collapse_step = -1

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.latest = {k: _floats(v) for k, v in tensors.items()}
        n = len(self.latest.get("dist", []))
        if n and len(self.names) != n:
            known = self.names[:-1][: n - 1]
            self.names = [*known, *(f"format{i}" for i in range(len(known), n - 1)), self.other_name]
        alerts = _nonfinite(self.source, "dist", tensors.get("dist"), self.names, step)
        self.entropy_bits.append(step, _scalar(tensors, "entropy_bits"))
        collapsed = bool(_scalar(tensors, "collapsed") == 1.0)
        if collapsed and not self.collapsed:
            self.collapse_step = step
            text = f"{self.source}: collapsed to {self.dominant_name} ({100 * self.scalar('dominant_share'):.1f}%)"
            alerts.append(NewAlert(f"{self.source}/collapse", text, step, "warning"))
        self.collapsed = collapsed
        return alerts

    def scalar(self, name: str) -> float:
        """Latest value of a scalar metric (NaN when absent)."""
        values = self.latest.get(name)
        return values[0] if values else math.nan

    @property
    def dominant_name(self) -> str:
        """Name of the dominant format of the latest reading (an em dash when nothing was classified)."""
        i = self.scalar("dominant")
        return self.names[int(i)] if math.isfinite(i) and 0 <= int(i) < len(self.names) else "—"

    @property
    def share_basis(self) -> str:
        """``" of classified"`` when the dominant share excludes an unclassified remainder, else ``""``.

        FormatProbe computes the dominant share, entropy and KL over the named formats,
        renormalised, unless its ``describe()`` says ``include_other``.
        """
        unclassified = self.scalar("unclassified")
        if self.describe.get("include_other") or not (math.isfinite(unclassified) and unclassified >= 0.0005):
            return ""
        return " of classified"


_STATES: dict[str, type[SourceState]] = {cls.type_name: cls for cls in (KeywordState, PrimingState, FormatState)}


def state_for(source: str, describe: Mapping[str, Any], *, history: int, keyword_metric: KeywordMetric) -> SourceState:
    """The state class for ``describe["type"]`` (an :class:`OtherState` for unknown types)."""
    cls = _STATES.get(str(describe.get("type", "")), OtherState)
    if cls is KeywordState:
        return KeywordState(source, describe, history=history, metric=keyword_metric)
    return cls(source, describe, history=history)
