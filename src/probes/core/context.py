"""``TrainingContext``: what a probe may ask of the training loop at an event, without a Trainer.

Probes are driven by a few events (attached, a training batch seen, before optimizer step ``t``,
training ended). Each event hands the probe a context: the module being trained, the step, the
data-parallel layout and the few collectives a probe needs. The Lightning callback adapter and the
plain-loop adapter each build one; a single process needs nothing but the module and the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch import nn

from probes.core.hub import Hubs

__all__ = ["TrainingContext"]

ScalarLogger = Callable[[str, torch.Tensor], None]


class TrainingContext:
    """The training loop as one probe event sees it.

    Args:
        root: the module being trained (the LightningModule, or the model itself in a plain loop);
            probes resolve their ``model=`` path inside it.
        step: optimizer steps taken so far (Lightning's ``global_step``). A reading at ``step`` is
            the weights after ``step`` updates, before update ``step + 1``.
        epoch: the epoch of the weights being read.
        final: True for the event after the last optimizer step (training ended).
        shard: ``(rank, n_ranks)`` over which a scoring probe splits its items (``(0, 1)``: every
            rank scores everything, as under sharded-parameter strategies).
        world_size: data-parallel ranks whose counts are summed (exposures, rollouts).
        hubs: the scoring hubs shared by the probes of this loop (one per set of scoring options).
        gather, reduce_sum, any_rank: the collectives, needed only with several ranks.
        log: sends a scalar to the loop's loggers, or None when there are none.
        request_stop: asks the loop to stop after this step (format collapse with ``on_collapse="stop"``).
        optimizers: the loop's optimizers (probes that watch the updates hook their steps).
    """

    def __init__(
        self,
        root: nn.Module,
        *,
        step: int,
        epoch: int = 0,
        final: bool = False,
        shard: tuple[int, int] = (0, 1),
        world_size: int = 1,
        hubs: Optional[Hubs] = None,
        gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        reduce_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        any_rank: Optional[Callable[[bool], bool]] = None,
        log: Optional[ScalarLogger] = None,
        request_stop: Optional[Callable[[], None]] = None,
        optimizers: Sequence[torch.optim.Optimizer] = (),
    ) -> None:
        if world_size > 1 and (reduce_sum is None or any_rank is None):
            raise ValueError("A context with world_size > 1 needs `reduce_sum=` and `any_rank=` collectives.")
        if shard[1] > 1 and gather is None:
            raise ValueError("A context that shards the probe set needs `gather=` (an all-gather).")
        self.root = root
        self.step = int(step)
        self.epoch = int(epoch)
        self.final = bool(final)
        self.shard = shard
        self.world_size = int(world_size)
        self.hubs = hubs if hubs is not None else Hubs()
        self.gather = gather
        self._reduce_sum = reduce_sum
        self._any_rank = any_rank
        self.log = log
        self._request_stop = request_stop
        self.stop_requested = False
        self.optimizers = tuple(optimizers)

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the data-parallel ranks (itself on one process)."""
        return self._reduce_sum(tensor) if self._reduce_sum is not None and self.world_size > 1 else tensor

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank (every rank must call it)."""
        return self._any_rank(flag) if self._any_rank is not None else bool(flag)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step."""
        self.stop_requested = True
        if self._request_stop is not None:
            self._request_stop()
