"""The one-line plain-text summary used when output is not a terminal (CI logs, files)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from probes.console.fmt import MISSING, fmt_count, fmt_duration, fmt_prob, fmt_rate, fmt_ratio, fmt_share
from probes.console.panels import RunHeader
from probes.console.sources import FormatState, KeywordState, PrimingState, SourceState

__all__ = ["summary_line"]


def _keyword(s: KeywordState) -> str:
    top = s.top(1)
    if not top or s.current is None:
        return f"{s.source}: no data"
    name, p, base, _ = top[0]
    finite = s.current[s.current.isfinite()]
    mean = f"{float(finite.mean()):.2f}" if finite.numel() else MISSING
    ratio = fmt_ratio(p / base) if base > 0 else "inf"
    return f"{s.source}: top {name} {ratio} ({s.metric} {fmt_prob(p)}), mean log10 {s.metric} {mean}"


def _priming(s: PrimingState, threshold: float) -> str:
    n = len(s.names)
    flags = s.latest.get("surprising")
    if flags is None:
        thr = s.threshold if s.threshold is not None else threshold
        flags = [1.0 if v < thr else 0.0 for v in s.latest.get("p_before", [])]
    k = sum(1 for v in flags if v == 1.0)
    prime = s.latest.get("s_prime", [])
    finite = [(v, i) for i, v in enumerate(prime) if math.isfinite(v)]
    best = ""
    if finite:
        v, i = max(finite)
        best = f", max s_prime {fmt_ratio(v)} ({s.names[i]})"
    return f"{s.source}: {n} samples, {k} surprising{best}"


def _format(s: FormatState) -> str:
    share = f"{fmt_share(s.scalar('dominant_share'))}{s.share_basis}"
    text = f"{s.source}: {s.dominant_name} {share}, H {s.scalar('entropy_bits'):.2f} bits"
    return text + (", COLLAPSED" if s.collapsed else "")


def summary_line(header: RunHeader, states: Sequence[SourceState], n_alerts: int, *, threshold: float = 1e-3) -> str:
    """``probes step 120 epoch 0 steps/s 12.5 elapsed 0:00:09 | keyword: ... | alerts 1``.

    Args:
        header: the run header values.
        states: the sources, in registration order (those without data are skipped).
        n_alerts: alerts raised so far.
        threshold: priming surprise threshold when neither the record nor the probe gives one.
    """
    epoch = str(header.epoch) if header.epoch >= 0 else MISSING
    step = fmt_count(header.step) if header.step >= 0 else MISSING
    parts = [
        f"{header.title} step {step} epoch {epoch} steps/s {fmt_rate(header.steps_per_s)}"
        f" elapsed {fmt_duration(header.elapsed)}"
    ]
    for s in states:
        if not s.has_data:
            continue
        if isinstance(s, KeywordState):
            parts.append(_keyword(s))
        elif isinstance(s, PrimingState):
            parts.append(_priming(s, threshold))
        elif isinstance(s, FormatState):
            parts.append(_format(s))
    if n_alerts:
        parts.append(f"alerts {n_alerts}")
    return " | ".join(parts)
