"""How ModelReader splits a probe set across DDP ranks (``shard_items``), checked in one process:
the all-gather is simulated by stacking what every rank would contribute."""

from __future__ import annotations

import random

import pytest
import torch

from probes.core.plan import ScoringPlan, TokenizedItem
from probes.core.reader import ModelReader, shard_items
from probes.demos import GPTConfig, TinyGPT


def shared_contexts(m: int = 32, k: int = 8) -> list[TokenizedItem]:
    """m contexts x k single-token keywords, context-major: the shape of a typical cloze probe set."""
    return [TokenizedItem(f"{c}-{j}", (*range(1, 20), c + 30), (j + 100,)) for c in range(m) for j in range(k)]


def random_items(n: int, seed: int = 1) -> list[TokenizedItem]:
    rng = random.Random(seed)
    return [
        TokenizedItem(
            str(i),
            tuple(rng.randrange(256) for _ in range(rng.randrange(3, 40))),
            tuple(rng.randrange(256) for _ in range(rng.randrange(1, 5))),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("world", [1, 2, 3, 8, 40])
def test_every_item_once_and_contexts_together(world):
    items = shared_contexts() + random_items(21)
    assign = shard_items(items, world)
    assert len(assign) == world
    assert sorted(i for a in assign for i in a) == list(range(len(items)))
    assert all(a == sorted(a) for a in assign)
    owner = {i: r for r, a in enumerate(assign) for i in a}
    for c in range(32):  # the 8 keywords of a context share its row: one rank scores them all
        assert len({owner[c * 8 + j] for j in range(8)}) == 1
    assert shard_items(items, world) == assign  # the same on every rank


def test_shared_contexts_halve_the_work_per_rank():
    """Dealing items round-robin would leave every rank with every context row."""
    items = shared_contexts()
    full = ScoringPlan(items).n_forward_tokens
    round_robin = [ScoringPlan(items[r::2]).n_forward_tokens for r in range(2)]
    grouped = [ScoringPlan([items[i] for i in a]).n_forward_tokens for a in shard_items(items, 2)]
    assert round_robin == [full, full]
    assert grouped == [full // 2, full // 2]


def test_tokens_are_balanced():
    items = random_items(101)
    for world in (2, 3, 8):
        loads = [ScoringPlan([items[i] for i in a]).n_forward_tokens for a in shard_items(items, world)]
        longest = max(len(it.context) + len(it.target) for it in items)
        assert max(loads) - min(loads) <= 2 * longest, (world, loads)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_gathered_reading_equals_the_unsharded_one(world):
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48)).eval()
    items = shared_contexts(6, 3) + random_items(7)
    ref = ModelReader(items).read(model)
    readers = [ModelReader(items) for _ in range(world)]
    packed: list[torch.Tensor] = []
    for r, reader in enumerate(readers):
        reader.bind(model, rank=r, world_size=world)
        reader.read(model, gather=lambda t: (packed.append(t), torch.stack([t] * world))[1])
    for reader in readers:  # now every rank receives everyone's slice, as all_gather delivers it
        got = reader.read(model, gather=lambda t: torch.stack(packed))
        torch.testing.assert_close(got.logp_seq, ref.logp_seq, atol=1e-6, rtol=0)
        torch.testing.assert_close(got.logp_first, ref.logp_first, atol=1e-6, rtol=0)
        assert torch.equal(got.rank, ref.rank)
