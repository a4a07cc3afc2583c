"""Synthetic records for the console tests: three sources with hand-picked, easy-to-check values."""

from __future__ import annotations

import io
import math

import torch
from rich.console import Console

from probes.core.records import Record

NAN = math.nan

KEYWORD_DESCRIBE = {
    "type": "KeywordProbe",
    "source": "keyword",
    "probe_set": {
        "separator": " ",
        "pairs": [
            {"name": n, "context": "c", "keyword": "k", "group": None}
            for n in ("sand", "honey", "snow", "a-pair-with-a-rather-long-name-to-cut")
        ],
    },
}
# P(keyword | context) per step; single-token keywords, so logp_seq = ln p.
KEYWORD_P = [
    [1e-4, 0.5, 0.02, 0.25],
    [1e-3, 0.25, 0.02, 0.25],
    [1e-2, 0.1, 0.04, 0.25],
]

PRIMING_DESCRIBE = {
    "type": "PrimingProbe",
    "source": "priming",
    "samples": [{"name": "vermilion-sand"}, {"name": "blue-honey"}, {"name": "late"}],
    "threshold": 1e-3,
}

FORMAT_DESCRIBE = {"type": "FormatProbe", "source": "format", "formats": ["boxed", "answer-is", "plain"]}
FORMAT_DIST = [
    [0.25, 0.25, 0.25, 0.25],
    [0.5, 0.25, 0.125, 0.125],
    [0.96875, 0.015625, 0.015625, 0.0],
]


class FakeClock:
    """A settable clock for steps/s and elapsed time."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def keyword_record(step: int) -> Record:
    p = torch.tensor(KEYWORD_P[step], dtype=torch.float32)
    return Record(
        step,
        "keyword",
        {"p_first": p, "logp_first": p.log(), "logp_seq": p.log(), "rank": torch.tensor([9, 1, 4, 2])},
        epoch=0,
    )


def priming_record(step: int) -> Record:
    p_before = torch.tensor([1e-4, 0.05, NAN], dtype=torch.float64)
    p_learn = torch.tensor([1e-4 * 10**step, 0.05, 0.3], dtype=torch.float64)
    s_mem = p_learn / p_before
    s_prime = torch.tensor([2.0**step, 0.5, NAN], dtype=torch.float64)
    return Record(
        step,
        "priming",
        {
            "p_learn": p_learn,
            "p_before": p_before,
            "s_mem": s_mem,
            "s_prime": s_prime,
            "log10_s_mem": s_mem.log10(),
            "log10_s_prime": s_prime.log10(),
            "median_prime_ratio": s_prime,
            "delta_p_learn": p_learn - p_before,
            "delta_p_prime": torch.zeros(3, dtype=torch.float64),
            "exposures": torch.tensor([step, step, 0]),
            "surprising": torch.tensor([True, False, False]),
            "has_baseline": torch.tensor([True, True, False]),
        },
        epoch=0,
    )


def format_record(step: int) -> Record:
    dist = torch.tensor(FORMAT_DIST[step], dtype=torch.float64)
    nz = dist[dist > 0]
    bits = float(-(nz * nz.log2()).sum())
    return Record(
        step,
        "format",
        {
            "dist": dist,
            "entropy_nats": torch.tensor(bits * math.log(2)),
            "entropy_bits": torch.tensor(bits),
            "norm_entropy": torch.tensor(bits / 2.0),
            "eff_formats": torch.tensor(2.0**bits),
            "dominant": torch.tensor(0),
            "dominant_share": dist[0],
            "kl_from_first": torch.tensor(0.5 * step),
            "unclassified": torch.tensor(0.0),
            "n": torch.tensor(32),
            "mean_reward": torch.tensor([0.75, 0.5, NAN, NAN]),
            "accuracy": torch.full((4,), NAN),
            "collapsed": torch.tensor(step == 2),
        },
        epoch=0,
    )


def all_records() -> list[Record]:
    return [f(step) for step in range(3) for f in (keyword_record, priming_record, format_record)]


DESCRIBES = {"keyword": KEYWORD_DESCRIBE, "priming": PRIMING_DESCRIBE, "format": FORMAT_DESCRIBE}


def render(renderable: object, width: int) -> str:
    """Plain text of ``renderable`` on a recording console of fixed width and no colour."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO(), legacy_windows=False)
    console.print(renderable)
    return console.export_text()
