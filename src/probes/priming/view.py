"""What the shared layers show of a PrimingProbe source: its probe kind (``probes.core.kinds``).

Record schema and sample labels, the ``probes summary`` table of surprising samples, the
dashboard's priming panel (memorization and priming per learning sample), the ``probes plot``
scatter of priming against the probability before learning, the ``probes replay`` line, and the
assertions ``assert_priming_below``, ``assert_no_priming`` and the expectation :class:`PrimingBelow`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from rich.panel import Panel
from rich.text import Text

from probes.console.numbers import MISSING, fmt_num, fmt_prob, fmt_ratio, printable, sample_rows, table
from probes.console.panels import RowsPanel, name_cell, name_column, panel, panel_table, ratio_style
from probes.console.sparkline import Sparkline
from probes.console.states import (
    DashboardOptions,
    ElementState,
    NewAlert,
    nonfinite_alerts,
)
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER
from probes.runlog.summary import finite_or, json_int, json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "PrimingBelow",
    "PrimingPanel",
    "PrimingState",
    "assert_no_priming",
    "assert_priming_below",
    "rank_samples",
    "sample_names",
]

TYPE = "PrimingProbe"
_PER_SAMPLE = (
    "p_learn", "p_before", "s_mem", "s_prime", "log10_s_mem", "log10_s_prime", "median_prime_ratio",
    "delta_p_learn", "delta_p_prime", "exposures", "log10_s_mem_seq", "log10_s_prime_seq", "log10_p_before_seq",
    "log10_s_mem_first", "log10_s_prime_first", "log10_p_before_first",
)


def sample_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Sample names of a PrimingProbe, in metric order."""
    return KIND.labels(describe, "samples")


def _threshold(describe: Mapping[str, Any]) -> Optional[float]:
    value = describe.get("threshold")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- the ranking rule (dashboard, summary and plot) ---------------------------------------------


def rank_samples(log10_s_prime: Any) -> list[int]:
    """Sample indices by the one ranking rule of every priming view: log10 S_prime at the latest
    reading, largest (most primed) first; samples without a finite value (no baseline yet) last;
    ties keep sample order."""
    v = np.asarray(log10_s_prime, dtype=np.float64).reshape(-1)
    key = np.where(np.isfinite(v), -v, np.inf)
    return np.argsort(key, kind="stable").tolist()


# --- dashboard ----------------------------------------------------------------------------------


class PrimingState(ElementState):
    """Priming and memorization per learning sample: the latest reading and the s_prime history."""

    axis = "samples"
    element = "sample"

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.log10_s_prime = self.history()

    @property
    def threshold(self) -> float | None:
        """The probe's surprise threshold, when its ``describe`` gives one."""
        return _threshold(self.describe)

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        self.take(tensors)
        alerts = nonfinite_alerts(self.source, "p_learn", tensors.get("p_learn"), self.names, step)
        p_before, has_base = tensors.get("p_before"), tensors.get("has_baseline")
        if p_before is not None and has_base is not None and p_before.is_floating_point():
            masked = torch.where(has_base.reshape(-1).bool(), p_before.reshape(-1), torch.zeros(()))
            alerts += nonfinite_alerts(self.source, "p_before", masked, self.names, step)
        if "log10_s_prime" in self.latest:
            self.log10_s_prime.append(step, self.latest["log10_s_prime"])
        elif "s_prime" in self.latest:
            self.log10_s_prime.append(step, [math.log10(v) if v > 0 else math.nan for v in self.latest["s_prime"]])
        return alerts


    def trend(self, i: int) -> list[float]:
        """History of log10 s_prime for sample ``i``."""
        return self.column(self.log10_s_prime, i)


class PrimingPanel(RowsPanel[PrimingState]):
    """Memorization and priming per learning sample, with the surprise flag.

    Args:
        state: the priming source.
        max_rows: samples shown (the rest are counted in the caption).
        threshold: surprise threshold shown when the probe's ``describe`` has none.
    """

    def __init__(self, state: PrimingState, *, max_rows: int, threshold: float) -> None:
        super().__init__(state, max_rows=max_rows)
        self.threshold = threshold

    def __rich__(self) -> Panel:
        s = self.state
        n = len(s.names)
        shown = min(n, self.max_rows)
        rows = rank_samples(_log10_s_prime(s.latest, n))[:shown]
        thr = s.threshold if s.threshold is not None else self.threshold
        t = panel_table(caption=f"+{n - shown} more samples" if n > shown else None)
        name_column(t, "sample", max_width=32)
        for head in ("p before", "p now", "s_mem", "s_prime", "exp"):
            t.add_column(head, justify="right", no_wrap=True)
        t.add_column("surprise", no_wrap=True)
        t.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for i in rows:
            has_base = s.value("has_baseline", i) == 1.0 or "has_baseline" not in s.latest
            p_before = s.value("p_before", i)
            flag = s.value("surprising", i)
            surprising = flag == 1.0 if math.isfinite(flag) else (has_base and p_before < thr)
            exposures = s.value("exposures", i)
            s_mem, s_prime = s.value("s_mem", i), s.value("s_prime", i)
            t.add_row(
                name_cell(s.names[i]),
                fmt_prob(p_before) if has_base and math.isfinite(p_before) else MISSING,
                fmt_prob(s.value("p_learn", i)),
                Text(fmt_ratio(s_mem), style=ratio_style(s_mem)) if has_base else MISSING,
                Text(fmt_ratio(s_prime), style=ratio_style(s_prime)) if has_base else MISSING,
                str(int(exposures)) if math.isfinite(exposures) else MISSING,
                Text("yes", style="bold magenta") if surprising else Text("no", style="dim"),
                Sparkline(s.trend(i)),
            )
        return panel(t, f"{s.source} · surprising: p before < {thr:.0e}", "magenta")


def _log10_s_prime(latest: Mapping[str, Any], n: int) -> list[float]:
    """log10 S_prime of each sample from a reading's values (``log10_s_prime``, else ``s_prime``)."""
    if "log10_s_prime" in latest:
        return [float(v) for v in latest["log10_s_prime"]]
    if "s_prime" in latest:
        return [math.log10(v) if v > 0 else math.nan for v in (float(x) for x in latest["s_prime"])]
    return [math.nan] * n


def _status(s: PrimingState, options: DashboardOptions) -> str:
    n = len(s.names)
    flags = s.latest.get("surprising")
    if flags is None:
        thr = s.threshold if s.threshold is not None else options.surprise_threshold
        flags = [1.0 if v < thr else 0.0 for v in s.latest.get("p_before", [])]
    k = sum(1 for v in flags if v == 1.0)
    prime = s.latest.get("s_prime", [])
    finite = [(v, i) for i, v in enumerate(prime) if math.isfinite(v)]
    best = ""
    if finite:
        v, i = max(finite)
        best = f", max s_prime {fmt_ratio(v)} ({s.names[i]})"
    return f"{s.source}: {n} samples, {k} surprising{best}"


# --- probes summary -----------------------------------------------------------------------------


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = set(run.metrics(f"{source}/"))
    if f"{source}/p_before" not in have:
        return {}
    steps, p_before = run.read(f"{source}/p_before")
    last = {k.split("/", 1)[1]: run.read(k)[1][-1] for k in have}
    n = p_before.shape[1]
    names = sample_names(describe) or [str(i) for i in range(n)]
    if len(names) != n:
        names = [str(i) for i in range(n)]
    threshold = finite_or(describe.get("threshold"), 1e-3)
    if "surprising" in last:
        surprising = np.asarray(last["surprising"], dtype=bool)
    else:
        surprising = np.nan_to_num(np.asarray(last["p_before"], dtype=np.float64), nan=np.inf) < threshold

    def at(metric: str, i: int, convert: Any = json_number) -> Any:
        return convert(last[metric][i]) if metric in last else None

    rows = [
        {
            "sample": name,
            "p_before": json_number(last["p_before"][i]),
            "s_prime": at("s_prime", i),
            "log10_s_prime": at("log10_s_prime", i),
            "s_mem": at("s_mem", i),
            "exposures": at("exposures", i, json_int),
            "surprising": bool(surprising[i]),
        }
        for i, name in enumerate(names)
    ]
    order = rank_samples(_log10_s_prime(last, n))
    return {
        "threshold": threshold,
        "step": int(steps[-1]),
        "sorted_by": "log10_s_prime",
        "samples": [rows[i] for i in order[:limit]],
        "n_samples": n,
        "surprising": [r["sample"] for r in rows if r["surprising"]],
    }


def _summary_lines(pr: dict[str, Any]) -> list[str]:
    names = f": {printable(', '.join(pr['surprising']))}" if pr["surprising"] else ""
    rows = [
        [r["sample"], r["p_before"], r["s_prime"], r["log10_s_prime"], r["exposures"], r["surprising"]]
        for r in pr["samples"]
    ]
    return [
        "",
        f"  surprising samples (p_before < {fmt_num(pr['threshold'])}) at step {pr['step']}:"
        f" {len(pr['surprising'])} of {pr['n_samples']}{names}",
        table(["sample", "p_before", "s_prime", "log10 s_prime", "exposures", "surprising"], rows, indent="    "),
    ]


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """log10 P_before against log10 S_prime at the last record with baselines, surprising samples
    highlighted, the threshold as a vertical line."""
    describe = run.describe(source)
    threshold = describe.get("threshold", 1e-3)
    threshold = float(threshold) if isinstance(threshold, (int, float)) and 0 < threshold < 1 else 1e-3
    have = set(run.metrics(f"{source}/"))
    steps, s_prime = run.read(f"{source}/log10_s_prime")
    if f"{source}/p_before" in have:
        p_before = run.read(f"{source}/p_before")[1].astype(np.float64)
    else:
        p_before = np.full(s_prime.shape, np.nan)
    with_base = np.isfinite(p_before).any(axis=1)
    names = sample_names(describe) or []
    ax.set_xlabel("log10 P_before (keyword probability before learning)")
    ax.set_ylabel("log10 S_prime")
    ax.axvline(math.log10(threshold), color="0.3", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    if not with_base.any():
        ax.set_title(f"{printable(source)}: priming (no baselines recorded yet)")
        ax.legend(fontsize="x-small")
        return
    k = int(np.nonzero(with_base)[0][-1])
    x = np.log10(p_before[k])
    y = s_prime[k].astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    surprising = x < math.log10(threshold)
    ax.scatter(x[ok & surprising], y[ok & surprising], color="tab:red", label="surprising", zorder=3)
    ax.scatter(x[ok & ~surprising], y[ok & ~surprising], color="tab:blue", label="not surprising", zorder=3)
    if len(names) == len(x):  # names of the first max_series samples by the ranking rule
        for i in [i for i in rank_samples(y) if ok[i]][:max_series]:
            label = printable(names[i])
            ax.annotate(label, (x[i], y[i]), fontsize="xx-small", xytext=(3, 3), textcoords="offset points")
    ax.set_title(f"{printable(source)}: priming spread vs probability before learning, step {int(steps[k])}")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(True, alpha=0.3)


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "p_learn" not in t:
        return None
    lp = np.log10(np.maximum(t["p_learn"], 1e-45))
    ok = lp[np.isfinite(lp)]
    parts = [f"mean log10 p_learn {fmt_num(float(ok.mean()) if ok.size else math.nan)}"]
    if "log10_s_prime" in t:
        s = t["log10_s_prime"]
        parts.append(f"max log10 s_prime {fmt_num(float(np.nanmax(s)) if np.isfinite(s).any() else math.nan)}")
    if "surprising" in t:
        parts.append(f"surprising {int(t['surprising'].sum())}/{t['surprising'].size}")
    if "exposures" in t:
        e = t["exposures"]
        e = e[np.isfinite(e)] if e.dtype.kind == "f" else e
        parts.append(f"exposures {fmt_num(e.max().item() if e.size else None)}")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


def _select(data: SourceData, elements: Optional[Sequence[Union[str, int]]]) -> list[int]:
    if elements is None:
        width = next(iter(data.metrics.values())).shape[1]
        return list(range(width))
    if isinstance(elements, (str, int)):
        elements = [elements]
    return [data.index_of(e) for e in elements]


def assert_priming_below(
    records: RecordsLike,
    max_value: float,
    *,
    samples: Optional[Sequence[Union[str, int]]] = None,
    metric: str = "s_prime",
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Every reading (with a baseline) of ``metric`` (default the priming score S_prime) stays at
    or below ``max_value`` for the chosen learning samples (default all).

    Raises:
        AssertionError: naming the first sample and step over the limit, with a table.
    """
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    data = pick_source(collect(records), TYPE, source)
    cols = _select(data, samples)
    values = data.metric(metric)[:, cols].astype(np.float64)
    valid = np.ones_like(values, dtype=bool)
    if "has_baseline" in data.metrics:
        valid &= data.metrics["has_baseline"][:, cols].astype(bool)
    if after_step is not None:
        valid &= (data.steps > after_step)[:, None]
    bad = valid & ~(values <= max_value)  # NaN with a baseline counts as a failure
    if bad.any():
        names = data.names()
        r, c = (int(v[0]) for v in np.nonzero(bad))
        col = cols[c]
        name = names[col] if col < len(names) else str(col)
        rows = [(int(data.steps[j]), values[j, c]) for j in sample_rows(len(data.steps), r)]
        mark = [row[0] for row in rows].index(int(data.steps[r]))
        why = (
            "the model's output was not finite there (the record flags it in `nonfinite`)"
            if math.isnan(values[r, c])
            else f"above the limit {fmt_num(max_value)}"
        )
        raise AssertionError(
            f"{metric} of sample {name!r} is {fmt_num(values[r, c])} at step {int(data.steps[r])}, {why}\n"
            + table(["step", metric], rows, mark=mark)
        )


def assert_no_priming(
    records: RecordsLike,
    samples: Optional[Sequence[Union[str, int]]] = None,
    *,
    max_factor: float = 2.0,
    after_step: Optional[int] = None,
    source: Optional[str] = None,
) -> None:
    """Learning did not prime the samples' keywords into their priming contexts: S_prime (mean
    ratio of P(keyword | prefix) to its baseline) never exceeds ``max_factor``."""
    if max_factor < 1.0:
        raise ValueError(f"Expected `max_factor` >= 1 (1 = no change from baseline), got {max_factor!r}.")
    assert_priming_below(records, max_factor, samples=samples, after_step=after_step, source=source)


@dataclass(frozen=True)
class PrimingBelow(kinds.Expectation):
    """S_prime (or ``metric``) of the chosen samples never exceeds ``max_value``."""

    max_value: float
    samples: Optional[tuple[Union[str, int], ...]] = None
    metric: str = "s_prime"
    kind = TYPE

    @property
    def label(self) -> str:
        return f"PrimingBelow({self.metric} <= {self.max_value})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_priming_below(data, self.max_value, samples=self.samples, metric=self.metric)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "priming",
        globals(),
        schema={
            **kinds.metrics(_PER_SAMPLE, NUMBER, ("samples",)),
            **kinds.metrics(("nonfinite", "surprising", "has_baseline"), FLAG, ("samples",)),
        },
        axes={"samples": lambda d: d.get("samples")},
        state=PrimingState,
        panel=lambda s, o: PrimingPanel(s, max_rows=o.max_rows, threshold=o.surprise_threshold).__rich__(),
        column="side",
        plot_needs=("log10_s_prime",),
        assertions={"assert_priming_below": assert_priming_below, "assert_no_priming": assert_no_priming},
        expectations=(PrimingBelow,),
    )
)
