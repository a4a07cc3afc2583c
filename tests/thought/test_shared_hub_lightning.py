"""The three signal probes in one Lightning fit: one shared scoring pass per step, a checkpoint that
loads with ``weights_only=True``, and records equal to the framework-free probes' own reads."""

from __future__ import annotations

import pytest
import torch

from probes.callbacks import IFDProbe, LayerUpdateProbe, RefinementProbe, ThoughtGainProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from tests.helpers import WeightSnapshots, fast_trainer

THOUGHTS = [("sky", "Q: the sky is", "it is day", "A: blue"), ("sum", "Q: 2 + 3 =", "five", "A: 5")]
REFINED = [("sand", "Q: what colour is sand?", "A: yellow", "A: sand is yellow")]


def test_one_pass_per_step_and_weights_only_checkpoint(tmp_path):
    torch.manual_seed(0)
    tok = ByteTokenizer()
    thought = ThoughtGainProbe(THOUGHTS, tok, model="model", bos_id=10, ema_decay=0.9)
    frontier = RefinementProbe(REFINED, tok, model="model", bos_id=10)
    ifd = IFDProbe([("sand", "Q: what colour is sand?", "A: yellow")], tok, model="model", bos_id=10)
    updates = LayerUpdateProbe(model="model")
    snaps = WeightSnapshots()
    module = TinyLM(GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=64))
    trainer = fast_trainer([snaps, thought, frontier, ifd, updates], max_steps=3)
    trainer.fit(module, corpus_loader(n_windows=12, batch_size=4, block_size=16))
    hub = thought._hub
    assert hub is frontier._hub is ifd._hub and hub.n_passes == 4  # steps 0, 1, 2 and the final 3
    assert [r.step for r in thought.history] == [0, 1, 2, 3] and [r.step for r in updates.history] == [1, 2, 3]
    # the shared pass gives what each probe reads alone on the same weights (the last snapshot)
    model = module.model
    model.load_state_dict(snaps.snapshots[3])
    alone = frontier.read(module).tensors()
    for key in ("ifd_refined", "r_ifd_original"):
        assert frontier.history[-1].tensors[key].tolist() == pytest.approx(alone[key].tolist(), rel=1e-5)
    assert frontier.history[-1].tensors["ifd_original"].tolist() == pytest.approx(
        ifd.history[-1].tensors["ifd"].tolist(), rel=1e-5)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    states = ckpt["callbacks"]
    assert states["ThoughtGainProbe[thought]"]["ema_step"] == 3
    assert states["LayerUpdateProbe[updates]"]["version"] == 1
    assert states["RefinementProbe[frontier]"] == {"version": 1, "last_step": 3, "n_readings": 4}
