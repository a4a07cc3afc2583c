"""A 2-rank DDP plain loop (gloo, CPU) with a FrequencyProbe: rank 0 writes its records as JSON.

Every rank trains on its own micro-batches (:func:`rank_batches`, two per optimizer step) through
``DistributedDataParallel``; the probe's counts are summed across ranks by ``reduce_sum`` once per
optimizer step, the maxima gathered. Run by ``test_frequency_ddp.py`` through ``tests/distributed/launch.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.probe import FrequencyProbe
from probes.integrations.loop import ProbeLoop
from tests.frequency.test_frequency_measures import ITEMS, _batches

STEPS, MICRO = 3, 2


def rank_batches(rank: int) -> list[list[dict]]:
    return _batches(ByteTokenizer(), STEPS, MICRO, seed=40 + rank)


def main() -> None:
    out = Path(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
    from launch import rendezvous

    rendezvous()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    inner = TinyGPT(GPTConfig(block_size=48))
    model = torch.nn.parallel.DistributedDataParallel(inner)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts)

    def reduce_sum(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    def any_rank(flag: bool) -> bool:
        t = torch.tensor([int(flag)])
        dist.all_reduce(t)
        return bool(t.item())

    probe = FrequencyProbe(ITEMS, ByteTokenizer(), layer="blocks.1")
    with ProbeLoop([probe], inner, rank=rank, world_size=world, gather=gather, reduce_sum=reduce_sum,
                   any_rank=any_rank) as loop:
        for micro in rank_batches(rank):
            for batch in micro:
                loop.observe_batch(batch)
                ids, mask = batch["input_ids"], batch["attention_mask"]
                loss = F.cross_entropy(model(ids, mask)[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1),
                                       reduction="none")
                (loss * mask[:, 1:].reshape(-1)).sum().div(mask.sum()).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    if rank == 0:
        records = [{"step": r.step, **{k: v.tolist() for k, v in r.tensors.items()}} for r in probe.history]
        out.write_text(json.dumps(records))
    dist.destroy_process_group()
    os._exit(0)


if __name__ == "__main__":
    main()
