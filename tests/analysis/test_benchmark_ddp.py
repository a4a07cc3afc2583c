"""Two CPU ranks (ddp_spawn, gloo): a BenchmarkProbe with instruction ablations shards its items
(every variant's) across the ranks and gathers them; both ranks record what one process reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from probes.callbacks import BenchmarkProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from tests.analysis.test_output_space import _instructed_suite
from tests.helpers import fast_trainer, fit_spawned

ABLATIONS = {"empty": "", "misleading": "Taste? "}


class Frozen(pl.LightningModule):
    """A fixed TinyGPT at ``.model`` (no gradients) and a dummy parameter that trains at lr 0."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = TinyGPT(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))
        self.model.requires_grad_(False)
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(torch.ones(1, 1)).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.layer.parameters(), lr=0.0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.arange(8), batch_size=1)


class Dump(pl.Callback):
    def __init__(self, probe: BenchmarkProbe, folder: str) -> None:
        self.probe, self.folder = probe, folder

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = [{k: v.tolist() for k, v in r.tensors.items()} | {"step": r.step} for r in self.probe.history]
        plan = self.probe.reader.plan
        dump = {"records": rows, "items_scored": 0 if plan is None else len(plan.items)}
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(dump))


@pytest.mark.slow  # two spawned processes
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_ranks_record_the_single_process_reading(tmp_path):
    suite = _instructed_suite()
    probe = BenchmarkProbe(suite, ByteTokenizer(), ablations=ABLATIONS, every_n_steps=1, model="model")
    module = Frozen()
    # reference: one process, every item (a separate probe: a bound ModelReader does not pickle)
    alone = BenchmarkProbe(suite, ByteTokenizer(), ablations=ABLATIONS, model="model")
    reference = {k: v.tolist() for k, v in alone.read(module).tensors().items()}
    trainer = fast_trainer(
        [probe, Dump(probe, str(tmp_path))], max_steps=2, strategy="ddp_spawn", devices=2, deterministic=False
    )
    fit_spawned(trainer, module, [tmp_path / f"rank{r}.json" for r in (0, 1)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # each rank scored a share of the items of every variant, and together all of them
    shares = [r["items_scored"] for r in ranks]
    assert 0 < min(shares) and sum(shares) == len(probe.items)
    assert ranks[0]["records"] == ranks[1]["records"]  # the same records on both ranks
    assert [r["step"] for r in ranks[0]["records"]] == [0, 1, 2]
    for record in ranks[0]["records"]:
        for name, want in reference.items():
            got = torch.tensor(record[name])
            torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-7, msg=name)
