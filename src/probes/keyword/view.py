"""What the shared layers show of a KeywordProbe source: its probe kind (``probes.core.kinds``).

Record schema and pair labels, the ``probes summary`` table of pairs by change, the dashboard's
keyword panel (pairs that moved most, with sparklines), the ``probes plot`` curves, the ``probes
replay`` line, and the assertions ``keyword_probability``, ``assert_keyword_learned``,
``assert_probability_trend`` and the expectation :class:`KeywordLearned`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import numpy as np
import torch
from rich.panel import Panel
from rich.text import Text

from probes.console.numbers import MISSING, fmt_num, fmt_prob, fmt_ratio, printable, sample_rows, table
from probes.console.panels import name_cell, name_column, panel, panel_table, ratio_style
from probes.console.sparkline import Sparkline
from probes.console.states import DashboardOptions, NewAlert, SourceState, display_names, floats, nonfinite_alerts
from probes.core import kinds
from probes.core.kinds import FLAG, NUMBER, Metric
from probes.runlog.summary import json_int, json_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from probes.runlog.reader import RunReader
    from probes.testing.collect import RecordsLike, SourceData

__all__ = [
    "KIND",
    "By",
    "KeywordLearned",
    "KeywordPanel",
    "KeywordState",
    "assert_keyword_learned",
    "assert_probability_trend",
    "keyword_probability",
    "log10_p",
    "pair_groups",
    "pair_names",
    "rank_pairs",
]

TYPE = "KeywordProbe"
_LN10 = math.log(10.0)
By = Literal["seq", "first"]


# --- labels -------------------------------------------------------------------------------------


def _pairs(describe: Mapping[str, Any]) -> Any:
    probe_set = describe.get("probe_set")
    return probe_set.get("pairs") if isinstance(probe_set, Mapping) else None


def pair_names(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Pair names of a KeywordProbe, in metric order."""
    return KIND.labels(describe, "pairs")


def pair_groups(describe: Mapping[str, Any]) -> Optional[list[str]]:
    """Pair groups of a KeywordProbe ("" when a pair has none), in metric order."""
    pairs = _pairs(describe)
    if not isinstance(pairs, Sequence):
        return None
    return [str(p.get("group", "")) if isinstance(p, Mapping) else "" for p in pairs]


# --- the ranking rule (dashboard, summary and plot) ---------------------------------------------

#: the metric pairs are ranked by in ``probes summary`` and ``probes plot`` (the dashboard's default
#: ``keyword_metric``): the chained probability of every keyword token
RANK_METRIC = "p_seq"


def rank_pairs(first: Any, last: Any) -> list[int]:
    """Pair indices by the one ranking rule of every keyword view: ``|last - first|`` of log10 P
    (P the chained keyword probability ``p_seq`` unless a view is told otherwise), largest first;
    a pair whose change is not finite (NaN or infinite scores) ranks before all others; ties keep
    pair order.

    Args:
        first, last: log10 P of every pair at the first and at the latest reading.
    """
    change = np.abs(np.asarray(last, dtype=np.float64) - np.asarray(first, dtype=np.float64))
    change = np.where(np.isfinite(change), change, np.inf)
    return np.argsort(-change, kind="stable").tolist()


def log10_p(run: RunReader, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Steps, log10 P of every pair and the metric's name: ``p_seq`` from ``logp_seq`` (the
    ranking metric), or ``p_first`` where a run has no ``logp_seq``."""
    if f"{source}/logp_seq" in run.metrics(f"{source}/"):
        steps, lp = run.read(f"{source}/logp_seq")
        return steps, lp.astype(np.float64) / _LN10, "p_seq"
    steps, p = run.read(f"{source}/p_first")
    with np.errstate(divide="ignore", invalid="ignore"):
        return steps, np.log10(p.astype(np.float64)), "p_first"


# --- dashboard ----------------------------------------------------------------------------------


class KeywordState(SourceState):
    """Keyword probabilities: baseline (first reading), current reading and history, as log10 p.

    ``options.keyword_metric`` picks ``"p_seq"`` (chained probability of all keyword tokens, from
    ``logp_seq``) or ``"p_first"`` (first keyword token).
    """

    def __init__(self, source: str, describe: Mapping[str, Any], options: Optional[DashboardOptions] = None) -> None:
        super().__init__(source, describe, options)
        self.names = display_names(_pairs(self.describe), "pair") or []
        self.metric = self.options.keyword_metric
        self.base: torch.Tensor | None = None
        self.base_step = -1
        self.current: torch.Tensor | None = None
        self.log10_p = self.history()

    def _ingest(self, tensors: Mapping[str, torch.Tensor], step: int) -> list[NewAlert]:
        if self.metric == "p_seq":
            lp = tensors["logp_seq"].detach().reshape(-1).double() / _LN10
        else:
            lp = tensors["p_first"].detach().reshape(-1).double().log10()
        if len(self.names) != lp.numel():
            self.names = [*self.names, *(f"pair{i}" for i in range(len(self.names), lp.numel()))][: lp.numel()]
        alerts = []
        for name in ("p_first", "logp_first", "logp_seq"):
            alerts += nonfinite_alerts(self.source, name, tensors.get(name), self.names, step)
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
        order = rank_pairs(self.base.cpu().numpy(), self.current.cpu().numpy())[:n]
        _, rows = self.log10_p.series()
        hist = torch.stack(rows)[:, order] if rows else None
        out = []
        for j, i in enumerate(order):
            series = floats(hist[:, j]) if hist is not None else []
            out.append((self.names[i], 10.0 ** float(self.current[i]), 10.0 ** float(self.base[i]), series))
        return out


class KeywordPanel:
    """The pairs whose probability moved most since the first reading.

    Args:
        state: the keyword source.
        top_n: rows shown.
    """

    def __init__(self, state: KeywordState, *, top_n: int) -> None:
        self.state = state
        self.top_n = top_n

    def __rich__(self) -> Panel:
        s = self.state
        rows = s.top(self.top_n)
        label = "p_seq" if s.metric == "p_seq" else "p_first"
        t = panel_table()
        name_column(t, "pair", max_width=40)
        t.add_column(label, justify="right", no_wrap=True)
        t.add_column(f"step {s.base_step}", justify="right", no_wrap=True)
        t.add_column("change", justify="right", no_wrap=True)
        t.add_column("trend", no_wrap=True, ratio=1, min_width=4)
        for name, p, base, series in rows:
            r = p / base if base > 0 else math.inf
            t.add_row(name_cell(name), fmt_prob(p), fmt_prob(base), Text(fmt_ratio(r), style=ratio_style(r)),
                      Sparkline(series))
        return panel(t, f"{s.source} · top {len(rows)} of {len(s.names)} pairs by change", "blue")


def _status(s: KeywordState, options: DashboardOptions) -> str:
    top = s.top(1)
    if not top or s.current is None:
        return f"{s.source}: no data"
    name, p, base, _ = top[0]
    finite = s.current[s.current.isfinite()]
    mean = f"{float(finite.mean()):.2f}" if finite.numel() else MISSING
    ratio = fmt_ratio(p / base) if base > 0 else "inf"
    return f"{s.source}: top {name} {ratio} ({s.metric} {fmt_prob(p)}), mean log10 {s.metric} {mean}"


# --- probes summary -----------------------------------------------------------------------------


def _summarize(run: RunReader, source: str, describe: Mapping[str, Any], limit: int) -> dict[str, Any]:
    have = run.metrics(f"{source}/")
    if f"{source}/p_first" not in have:
        return {}
    steps, p = run.read(f"{source}/p_first")
    names = pair_names(describe) or [str(i) for i in range(p.shape[1])]
    groups = pair_groups(describe) or [""] * len(names)
    if len(names) != p.shape[1]:
        names, groups = [str(i) for i in range(p.shape[1])], [""] * p.shape[1]
    rank = run.read(f"{source}/rank")[1] if f"{source}/rank" in have else None
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.log10(p[-1].astype(np.float64)) - np.log10(p[0].astype(np.float64))
    _, lp, metric = log10_p(run, source)
    rows = []
    for j, name in enumerate(names):
        col = p[:, j].astype(np.float64)
        finite = bool(np.isfinite(col).any())
        rows.append(
            {
                "pair": name,
                "group": groups[j],
                f"{metric}_initial": json_number(10.0 ** lp[0, j]),
                f"{metric}_final": json_number(10.0 ** lp[-1, j]),
                f"delta_log10_{metric}": json_number(lp[-1, j] - lp[0, j]),
                "p_first_initial": json_number(col[0]),
                "p_first_final": json_number(col[-1]),
                "delta_log10": json_number(delta[j]),
                "p_first_min": json_number(np.nanmin(col)) if finite else None,
                "min_step": int(steps[np.nanargmin(col)]) if finite else None,
                "p_first_max": json_number(np.nanmax(col)) if finite else None,
                "max_step": int(steps[np.nanargmax(col)]) if finite else None,
                "rank_final": json_int(rank[-1, j]) if rank is not None else None,
            }
        )
    order = rank_pairs(lp[0], lp[-1])
    return {
        "pairs": [rows[j] for j in order[:limit]],
        "n_pairs": len(rows),
        "metric": metric,
        "sorted_by": f"|delta_log10_{metric}|",
    }


def _signed(x: Any) -> str:
    return "-" if x is None else ("+" if x >= 0 else "") + fmt_num(x)


def _summary_lines(kw: dict[str, Any]) -> list[str]:
    m = kw.get("metric", "p_first")
    rows = [
        [r["pair"], r["group"], r.get(f"{m}_initial"), r.get(f"{m}_final"), _signed(r.get(f"delta_log10_{m}")),
         r["p_first_final"], r["rank_final"]]
        for r in kw["pairs"]
    ]
    return [
        "",
        f"  pairs by |change of log10 {m}| ({len(rows)} of {kw['n_pairs']}):",
        table(["pair", "group", f"{m} first", "final", "Δlog10", "p_first final", "rank"], rows, indent="    "),
    ]


# --- probes plot and replay ---------------------------------------------------------------------


def _plot(ax: Axes, run: RunReader, source: str, max_series: int) -> None:
    """P(keyword) (``p_seq``; ``p_first`` for runs without it) per pair over steps, log scale; the
    ``max_series`` pairs first by the ranking rule (:func:`rank_pairs`)."""
    steps, lp, metric = log10_p(run, source)
    names = [printable(n) for n in pair_names(run.describe(source)) or []]
    if len(names) != lp.shape[1]:
        names = [str(i) for i in range(lp.shape[1])]
    order = rank_pairs(lp[0], lp[-1])[:max_series]
    for j in sorted(order):
        ax.plot(steps, 10.0 ** lp[:, j], label=names[j], linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("P(keyword)" if metric == "p_seq" else "P(first keyword token)")
    shown = f" ({len(order)} of {lp.shape[1]} pairs that moved most)" if len(order) < lp.shape[1] else ""
    ax.set_title(f"{printable(source)}: keyword probabilities {metric}{shown}")
    if len(order) <= 12:
        ax.legend(fontsize="x-small", ncols=2 if len(order) > 6 else 1, loc="best")
    ax.grid(True, which="major", alpha=0.3)


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)] if a.dtype.kind == "f" else a


def _replay(t: Mapping[str, np.ndarray], describe: Mapping[str, Any]) -> Optional[str]:
    if "logp_first" not in t and "p_first" not in t:
        return None
    lp = t["logp_first"] / math.log(10) if "logp_first" in t else np.log10(t["p_first"])
    ok, any_finite = _finite(lp), bool(np.isfinite(lp).any())
    parts = [
        f"mean log10 p_first {fmt_num(float(ok.mean()) if ok.size else math.nan)}",
        f"min {fmt_num(float(np.nanmin(lp)) if any_finite else math.nan)}",
        f"max {fmt_num(float(np.nanmax(lp)) if any_finite else math.nan)}",
    ]
    if "rank" in t:
        parts.append(f"median rank {fmt_num(float(np.median(t['rank'])))}")
    return "  ".join(parts)


# --- probes.testing -----------------------------------------------------------------------------


def _source(records: RecordsLike, source: Optional[str]) -> SourceData:
    from probes.testing.collect import collect, pick_source  # probes.testing loads Lightning

    return pick_source(collect(records), TYPE, source)


def _check_by(by: str) -> None:
    if by not in ("seq", "first"):
        raise ValueError(f"Expected `by` to be 'seq' (chained keyword probability) or 'first', got {by!r}.")


def _label(by: str) -> str:
    return "P_seq" if by == "seq" else "P_first"


def keyword_probability(
    records: RecordsLike, pair: Union[str, int], *, by: By = "seq", source: Optional[str] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Steps and P(keyword | context) of one pair: chained over its tokens (``by="seq"``) or of
    its first token (``by="first"``)."""
    _check_by(by)
    data = _source(records, source)
    i = data.index_of(pair)
    logp = data.metric("logp_seq" if by == "seq" else "logp_first")[:, i].astype(np.float64)
    return data.steps, np.exp(logp)


def assert_keyword_learned(
    records: RecordsLike,
    pair: Union[str, int],
    *,
    min_prob: float = 0.5,
    min_gain: Optional[float] = None,
    at_step: Optional[int] = None,
    by: By = "seq",
    source: Optional[str] = None,
) -> None:
    """The keyword of ``pair`` is learned: P(keyword | context) >= ``min_prob`` at ``at_step``
    (default: the last reading), and, if given, at least ``min_gain`` times its first reading.

    Raises:
        AssertionError: naming the pair, step, probability and thresholds, with a table.
        ValueError: unknown pair or source, or a step with no reading.
    """
    if not 0.0 < min_prob <= 1.0:
        raise ValueError(f"Expected `min_prob` in (0, 1], got {min_prob!r}.")
    if min_gain is not None and min_gain <= 0:
        raise ValueError(f"Expected `min_gain` > 0, got {min_gain!r}.")
    steps, p = keyword_probability(records, pair, by=by, source=source)
    if at_step is None:
        k = len(steps) - 1
    else:
        hits = np.nonzero(steps == at_step)[0]
        if not len(hits):
            raise ValueError(f"No reading at step {at_step}; readings exist at steps {steps.tolist()[:20]}.")
        k = int(hits[0])
    problems = []
    if math.isnan(p[k]):
        problems.append(
            f"{_label(by)} is NaN: the model's output was not finite there (the record flags it in `nonfinite`)"
        )
    elif not p[k] >= min_prob:
        problems.append(f"{_label(by)} = {fmt_num(p[k])} < min_prob {fmt_num(min_prob)}")
    gain = p[k] / p[0] if p[0] > 0 else math.inf
    if min_gain is not None and not gain >= min_gain:
        problems.append(f"gain {fmt_num(gain)}x over step {int(steps[0])} < min_gain {fmt_num(min_gain)}x")
    if problems:
        rows = [(int(steps[j]), p[j], p[j] / p[0] if p[0] > 0 else math.inf) for j in sample_rows(len(steps), k)]
        mark = [r[0] for r in rows].index(int(steps[k]))
        raise AssertionError(
            f"keyword of {pair!r} not learned at step {int(steps[k])}: "
            + "; ".join(problems)
            + "\n"
            + table(["step", _label(by), "gain"], rows, mark=mark)
        )


def assert_probability_trend(
    records: RecordsLike,
    pair: Union[str, int],
    direction: Literal["rising", "falling"] = "rising",
    *,
    min_change: float = 0.5,
    tolerance: float = 0.5,
    by: By = "seq",
    source: Optional[str] = None,
) -> None:
    """P(keyword | context) moves in ``direction``: the net change from first to last reading is
    at least ``min_change`` decades (log10 units), and no reading moves back more than
    ``tolerance`` decades from the best value seen so far (noise allowance).

    Raises:
        AssertionError: naming the pair and the step of the net change or the worst setback.
    """
    if direction not in ("rising", "falling"):
        raise ValueError(f"Expected `direction` to be 'rising' or 'falling', got {direction!r}.")
    if min_change < 0 or tolerance < 0:
        raise ValueError(f"Expected non-negative `min_change` and `tolerance`, got {min_change!r}, {tolerance!r}.")
    steps, p = keyword_probability(records, pair, by=by, source=source)
    if len(steps) < 2:
        raise AssertionError(f"trend of {pair!r} needs at least 2 readings, got {len(steps)}.")
    sign = 1.0 if direction == "rising" else -1.0
    x = sign * np.log10(np.maximum(p, 1e-300))  # larger is better in both directions
    setback = np.maximum.accumulate(x) - x
    worst = int(np.argmax(setback))
    net = float(x[-1] - x[0])
    problem = None
    if not np.all(np.isfinite(x)):
        worst = int(np.nonzero(~np.isfinite(x))[0][0])
        problem = f"non-finite probability at step {int(steps[worst])}"
    elif net < min_change:
        worst = len(x) - 1
        problem = (
            f"net change {sign * net:+.3g} decades from step {int(steps[0])} to {int(steps[-1])},"
            f" needs {sign * min_change:+.3g}"
        )
    elif setback[worst] > tolerance:
        problem = f"fell back {setback[worst]:.3g} decades at step {int(steps[worst])} (tolerance {tolerance:.3g})"
    if problem:
        rows = [(int(steps[j]), p[j], sign * (x[j] - x[0])) for j in sample_rows(len(steps), worst)]
        mark = [r[0] for r in rows].index(int(steps[worst]))
        raise AssertionError(
            f"{_label(by)} of {pair!r} is not {direction}: {problem}\n"
            + table(["step", _label(by), "log10 change"], rows, mark=mark)
        )


@dataclass(frozen=True)
class KeywordLearned(kinds.Expectation):
    """By optimizer step ``by_step``, P(keyword of ``pair`` | context) >= ``min_prob``."""

    pair: Union[str, int]
    by_step: int
    min_prob: float = 0.5
    by: By = "seq"
    kind = TYPE

    @property
    def label(self) -> str:
        return f"KeywordLearned({self.pair!r}, by_step={self.by_step}, min_prob={self.min_prob})"

    def verify(self, data: Mapping[str, SourceData]) -> None:
        assert_keyword_learned(data, self.pair, min_prob=self.min_prob, by=self.by)


KIND = kinds.register(
    kinds.ProbeKind.from_views(
        TYPE,
        "keyword",
        globals(),
        schema={
            **kinds.metrics(("p_first", "logp_first", "logp_seq", "rank"), NUMBER, ("pairs",)),
            "nonfinite": Metric(FLAG, ("pairs",)),
        },
        axes={"pairs": _pairs},
        state=KeywordState,
        panel=lambda s, o: KeywordPanel(s, top_n=o.top_n).__rich__(),
        column="main",
        plot_needs=("p_first",),
        assertions={
            "assert_keyword_learned": assert_keyword_learned,
            "assert_probability_trend": assert_probability_trend,
        },
        expectations=(KeywordLearned,),
    )
)
