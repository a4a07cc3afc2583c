"""ModelReader sharded across 2 gloo processes returns exactly the single-process scores."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from probes.core.plan import TokenizedItem
from probes.core.reader import ModelReader
from probes.demos import GPTConfig, TinyGPT


def _items(n: int) -> list[TokenizedItem]:
    g = torch.Generator().manual_seed(5)
    return [
        TokenizedItem(
            f"i{i}",
            tuple(torch.randint(0, 256, (3 + i % 7,), generator=g).tolist()),
            tuple(torch.randint(0, 256, (1 + i % 3,), generator=g).tolist()),
        )
        for i in range(n)
    ]


N_ITEMS = (11, 1)  # uneven shards; more ranks than items


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))

    def gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        return torch.stack(parts)

    results = {}
    for n in N_ITEMS:
        reader = ModelReader(_items(n))
        reader.bind(model, rank=rank, world_size=world)
        s = reader.read(model, gather=gather)
        results.update({f"{n}/logp_first": s.logp_first, f"{n}/logp_seq": s.logp_seq, f"{n}/rank": s.rank})
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_sharded_read_equals_single_process(tmp_path):
    out = str(tmp_path / "scores.pt")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))
    for n in N_ITEMS:
        ref = ModelReader(_items(n)).read(model)
        assert torch.allclose(got[f"{n}/logp_first"], ref.logp_first, atol=1e-6)
        assert torch.allclose(got[f"{n}/logp_seq"], ref.logp_seq, atol=1e-6)
        assert torch.equal(got[f"{n}/rank"], ref.rank)
