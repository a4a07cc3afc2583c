"""Timelines and the supersede rule, as pure functions over step arrays.

Every writer session appends to one *timeline*. A resumed session starts a new timeline that
names its ``parent`` and its ``fork_step``: the last step of the parent that the resumed training
continues from. The reader shows the *lineage* of the newest timeline (the tip): all of the tip's
records, its parent's records with ``step <= fork_step``, the grandparent's up to the smaller of
both fork steps, and so on. Timelines outside the lineage (abandoned branches) are hidden, and
nothing on disk is ever rewritten. If a step still occurs more than once, the newest timeline's
record wins, then the later shard, then the later row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Branch", "lineage", "resolve", "select_visible"]


@dataclass(frozen=True)
class Branch:
    """Where a resumed writer attaches to the existing log.

    Args:
        parent: the timeline the resumed training continues (its checkpoint was written there).
        fork_step: the last step of ``parent`` that stays valid; the parent's later records are
            superseded. ``parent``'s records with ``step <= fork_step`` stay visible.

    Example::

        RunWriter(path, branch=Branch(parent=0, fork_step=499))
        RunWriter(path, branch=open_run(path).tip())   # simply continue the newest timeline
    """

    parent: int
    fork_step: int

    def __post_init__(self) -> None:
        for name in ("parent", "fork_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise ValueError(f"Expected Branch.{name} to be an int >= -1, got {value!r}.")


def lineage(timelines: Mapping[int, tuple[int, int]], tip: int) -> list[tuple[int, float]]:
    """The visible timelines from ``tip`` back to the root, each with its step cutoff.

    Args:
        timelines: timeline id -> (parent id, fork step); parents must have smaller ids.
        tip: the timeline to view.

    Returns:
        ``[(timeline, cutoff), ...]`` tip first; records of ``timeline`` with ``step <= cutoff``
        are visible (the tip's cutoff is infinite). A parent missing from ``timelines`` ends the chain.
    """
    chain: list[tuple[int, float]] = []
    cutoff: float = math.inf
    t = tip
    while t >= 0 and t in timelines:
        chain.append((t, cutoff))
        parent, fork = timelines[t]
        if parent >= t:  # validated per shard; guards against cycles
            break
        cutoff = min(cutoff, fork)
        t = parent
    return chain


def select_visible(pieces: Sequence[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick exactly one record per step from candidate pieces ordered by increasing precedence.

    Args:
        pieces: ``(steps, cutoff)`` per piece (one shard's block of one source), sorted so that a
            later piece wins over an earlier one (older timeline first, then by shard number).

    Returns:
        ``(steps, piece, row)``: the visible steps in increasing order, and for each the index of
        the piece and the row inside it that holds the winning record.
    """
    if not pieces:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    steps_l, piece_l, row_l = [], [], []
    for i, (steps, cutoff) in enumerate(pieces):
        rows = np.nonzero(steps <= cutoff)[0] if cutoff != math.inf else np.arange(len(steps))
        steps_l.append(steps[rows].astype(np.int64, copy=False))
        piece_l.append(np.full(len(rows), i, dtype=np.int64))
        row_l.append(rows.astype(np.int64, copy=False))
    steps_a, piece_a, row_a = np.concatenate(steps_l), np.concatenate(piece_l), np.concatenate(row_l)
    order = np.lexsort((row_a, piece_a, steps_a))
    s = steps_a[order]
    keep = np.ones(len(s), dtype=bool)
    keep[:-1] = s[1:] != s[:-1]
    winners = order[keep]
    return steps_a[winners], piece_a[winners], row_a[winners]


def resolve(
    timelines: Mapping[int, tuple[int, int]], tip: int, blocks: Sequence[tuple[int, int, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the supersede rule to the blocks of one source.

    Args:
        timelines: timeline id -> (parent id, fork step).
        tip: the timeline viewed.
        blocks: ``(timeline, seq, steps)`` per shard holding records of the source.

    Returns:
        ``(steps, block, row)``: visible steps in increasing order, one per step, with the index
        into ``blocks`` and the row of the winning record.
    """
    chain = lineage(timelines, tip)
    rank = {t: len(chain) - i for i, (t, _) in enumerate(chain)}
    cutoff = dict(chain)
    order = sorted((i for i, b in enumerate(blocks) if b[0] in rank), key=lambda i: (rank[blocks[i][0]], blocks[i][1]))
    steps, piece, row = select_visible([(blocks[i][2], cutoff[blocks[i][0]]) for i in order])
    mapping = np.asarray(order, dtype=np.int64)
    return steps, mapping[piece] if len(piece) else piece, row
