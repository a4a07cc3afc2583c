"""ModelReader sharded across 2 gloo processes returns exactly the single-process scores."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from probes.demos import GPTConfig, TinyGPT
from probes.engine import TokenizedItem
from probes.model_reader import ModelReader


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


def _worker(rank: int, world: int, port: int, n_items: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))
    reader = ModelReader(_items(n_items))
    reader.bind(model, rank=rank, world_size=world)

    def gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        return torch.stack(parts)

    s = reader.read(model, gather=gather)
    if rank == 0:
        torch.save({"logp_first": s.logp_first, "logp_seq": s.logp_seq, "rank": s.rank}, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n_items", [11, 1])  # uneven shards; more ranks than items
def test_sharded_read_equals_single_process(tmp_path, n_items):
    out = str(tmp_path / "scores.pt")
    mp.start_processes(_worker, args=(2, _free_port(), n_items, out), nprocs=2, join=True, start_method="spawn")
    got = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=32))
    ref = ModelReader(_items(n_items)).read(model)
    assert torch.allclose(got["logp_first"], ref.logp_first, atol=1e-6)
    assert torch.allclose(got["logp_seq"], ref.logp_seq, atol=1e-6)
    assert torch.equal(got["rank"], ref.rank)
