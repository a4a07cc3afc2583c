"""The three signal probes in a plain DDP loop (gloo, CPU): each rank writes its records to JSON.

Run by ``test_ddp_signals.py`` through ``tests.distributed.launch`` (2 ranks), and in one process
(``--world 1``) on the global batch as the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from probes.demos import ByteTokenizer, GPTConfig, TinyGPT  # noqa: E402
from probes.frontier.probe import RefinementProbe  # noqa: E402
from probes.integrations.loop import ProbeLoop  # noqa: E402
from probes.thought.probe import ThoughtGainProbe  # noqa: E402
from probes.updates.probe import LayerUpdateProbe  # noqa: E402

THOUGHTS = [(f"t{i}", f"Q: item {i} is", f"thought {i}", f"A: {i * 7}") for i in range(5)]
REFINED = [(f"r{i}", f"Q: what is {i}?", f"A: {i}", f"A: it is {i}") for i in range(5)]
STEPS, PER_RANK = 3, 2


class Holder(nn.Module):
    """The one-process root with the same attribute path (``module``) as a DDP wrapper."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module(ids)


def batches(world: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (PER_RANK * 2, 17), generator=gen) for _ in range(STEPS)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--world", type=int, default=2)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rank = 0
    kw: dict = {}
    if args.world > 1:
        import torch.distributed as dist

        from tests.distributed.launch import rendezvous

        rendezvous()
        dist.init_process_group("gloo")
        rank = dist.get_rank()

        def gather(t: torch.Tensor) -> torch.Tensor:
            out = [torch.empty_like(t) for _ in range(args.world)]
            dist.all_gather(out, t.contiguous())
            return torch.stack(out)

        def reduce_sum(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            dist.all_reduce(t)
            return t

        def any_rank(flag: bool) -> bool:
            t = torch.tensor([1.0 if flag else 0.0])
            dist.all_reduce(t)
            return bool(t.item() > 0)

        kw = dict(rank=rank, world_size=args.world, gather=gather, reduce_sum=reduce_sum, any_rank=any_rank)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=64))
    root = nn.parallel.DistributedDataParallel(model) if args.world > 1 else Holder(model)
    tok = ByteTokenizer()
    probes = [
        LayerUpdateProbe(model="module"),
        ThoughtGainProbe(THOUGHTS, tok, model="module", bos_id=10, ema_decay=0.5),
        RefinementProbe(REFINED, tok, model="module", bos_id=10),
    ]
    opt = torch.optim.AdamW(root.parameters(), lr=3e-3)
    with ProbeLoop(probes, root, **kw) as loop:
        for ids in batches(args.world):
            mine = ids[rank * PER_RANK:(rank + 1) * PER_RANK] if args.world > 1 else ids
            logits = root(mine[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 256), mine[:, 1:].reshape(-1))
            loss.backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    dump = {p.source: [{"step": r.step, **{k: v.double().reshape(-1).tolist() for k, v in r.tensors.items()}}
                       for r in p.history] for p in probes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{rank}.json").write_text(json.dumps(dump))
    torch.set_num_threads(threads)
    if args.world > 1:
        import torch.distributed as dist

        dist.barrier()  # leave together: rank 0 hosts the store, and a peer gone early can hang its teardown
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
