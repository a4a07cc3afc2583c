"""Two CPU ranks (ddp_spawn, gloo): rollout counts are pooled and the collapse decision agreed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist

from probes.callbacks import FormatProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from probes.formats.collapse import CollapseCriterion
from probes.formats.spec import Format, FormatSpec, LabelSpace
from tests.helpers import fit_spawned

from ._util import ScriptedRollouts, trainer

SPEC = FormatSpec([Format("eq", regex=r"\A="), Format("ans", regex=r"\Aans:")])

# item i of the loader: even items go to rank 0, odd items to rank 1 (DistributedSampler, no shuffle)
SCRIPT = [
    {"completions": ["= 1"] * 4, "rewards": [1.0] * 4},  # rank 0 alone: share 1.0, collapsed at once
    {"completions": ["ans: 1", "ans: 2", "= 3", "?"], "rewards": [0.0, 1.0, 1.0, 0.0]},  # rank 1
    {"completions": ["= 2"] * 4, "rewards": [0.5] * 4},
    {"completions": ["ans: 3"] * 3 + ["= 1"], "rewards": [1.0] * 4},
]


class ByItem(ScriptedRollouts):
    def __init__(self, script: list[dict[str, Any]]) -> None:
        super().__init__(script)
        torch.manual_seed(0)
        self.model = TinyGPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=16))  # read in scored mode
        self.model.requires_grad_(False)  # not trained: DDP must not wait for its gradients

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        self.script_index = int(batch[0])
        return super().training_step(batch, self.script_index)


class Dump(pl.Callback):
    def __init__(self, probes: list[FormatProbe], folder: str) -> None:
        self.probes, self.folder = probes, folder

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = {
            p.source: [{k: v.tolist() for k, v in r.tensors.items()} | {"step": r.step} for r in p.history]
            for p in self.probes
        }
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(rows))


@pytest.mark.slow  # two spawned processes: about 30 s on a loaded 2-core machine
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_ranks_pool_counts_and_agree(tmp_path):
    probe = FormatProbe(SPEC, mode="rollout", collapse=CollapseCriterion(tau=0.9, patience=1))
    prompts = ["1+1 ", "2+3 ", "hello", "a"]  # 4 prompts x 2 prefixes: each rank scores half the items
    labels = LabelSpace(["=", "ans:"], separator="")
    scored = FormatProbe(
        labels, mode="scored", name="scored", prompts=prompts, tokenizer=ByteTokenizer(), model="model"
    )
    module = ByItem(SCRIPT)
    # reference: one process, every item (a separate probe: a bound ModelReader does not pickle)
    alone = FormatProbe(labels, mode="scored", prompts=prompts, tokenizer=ByteTokenizer(), model="model")
    reference = alone.metrics(alone.read(module))["dist"].tolist()
    t = trainer([probe, scored, Dump([probe, scored], str(tmp_path))], max_steps=2, strategy="ddp_spawn", devices=2)
    fit_spawned(t, module, [tmp_path / f"rank{r}.json" for r in (0, 1)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same records on both ranks
    # the sharded scored pass (lr = 0: weights never change) equals the single-process reading
    assert [r["step"] for r in ranks[0]["scored"]] == [0, 1, 2]
    for record in ranks[0]["scored"]:
        assert record["dist"] == pytest.approx(reference, abs=1e-6)
    # step 0 pools items 0 and 1: 5 '=' , 2 'ans:', 1 other of 8; step 1 pools items 2 and 3
    first, second = ranks[0]["format"]
    assert first["step"] == 0 and first["n"] == 8
    assert first["dist"] == pytest.approx([5 / 8, 2 / 8, 1 / 8])
    assert first["mean_reward"] == pytest.approx([(4 + 1) / 5, 0.5, 0.0])
    assert second["dist"] == pytest.approx([5 / 8, 3 / 8, 0.0])
    assert not first["collapsed"] and not second["collapsed"]  # rank 0 alone would have collapsed
