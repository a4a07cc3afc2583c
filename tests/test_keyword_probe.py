"""KeywordProbe in real Lightning training runs."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from probes import KeywordProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT, TinyLM, corpus_loader
from tests.helpers import WeightSnapshots, fact_pairs, fast_trainer
from tests.reference import brute_force_pair

CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)


def _train(callbacks, *, dropout=0.0, steps=12, manual=False, accumulate=1, n_batches=None, **trainer_kw):
    pl.seed_everything(7)
    module = TinyLM(
        GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64, dropout=dropout), manual=manual, accumulate=accumulate
    )
    loader = corpus_loader(n_windows=8 * (n_batches or steps * accumulate), batch_size=8, block_size=32)
    trainer = fast_trainer(callbacks, max_steps=steps, max_epochs=1, **trainer_kw)
    trainer.fit(module, loader)
    return module, trainer


def test_loss_trajectory_bit_identical_with_probe_and_dropout():
    base, _ = _train([], dropout=0.2)
    probe = KeywordProbe(fact_pairs(), ByteTokenizer(), model="model")
    probed, _ = _train([probe], dropout=0.2)
    assert len(base.losses) == 12
    assert probed.losses == base.losses  # exact float equality, every step
    assert [r.step for r in probe.history] == list(range(13))


@pytest.mark.parametrize(
    ("manual", "accumulate"),
    [(False, 1), (False, 3), (True, 2)],
    ids=["automatic", "grad-accumulation", "manual"],
)
def test_readings_see_weights_before_each_update(manual, accumulate):
    probe = KeywordProbe(fact_pairs(2), ByteTokenizer(), model="model")
    snaps = WeightSnapshots()
    kw = {} if manual else {"accumulate_grad_batches": accumulate}
    n_updates = 4
    _train(
        [probe, snaps], steps=n_updates, manual=manual, accumulate=accumulate, n_batches=n_updates * accumulate, **kw
    )
    # one reading per optimizer update (before it) plus the final one
    assert [r.step for r in probe.history] == list(range(n_updates + 1))
    model = TinyGPT(CFG).eval()
    tok = ByteTokenizer()
    for record in probe.history:
        model.load_state_dict(snaps.snapshots[record.step])  # weights after `step` updates
        for i, (_, ctx, key, _) in enumerate(fact_pairs(2)):
            ref = brute_force_pair(model, tok.encode(ctx), tok.encode(" " + key))
            assert record.tensors["logp_seq"][i].item() == pytest.approx(ref["logp_seq"], abs=1e-5)
            assert record.tensors["p_first"][i].item() == pytest.approx(ref["p_first"], rel=1e-5)
    # the weights really changed between readings, so the comparison above is not vacuous
    first, last = probe.history[0].tensors["logp_seq"], probe.history[-1].tensors["logp_seq"]
    assert not torch.allclose(first, last)


def test_every_n_steps_and_two_instances_coexist():
    a = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="model", name="every2", every_n_steps=2)
    b = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="model", name="every3", every_n_steps=3)
    _train([a, b], steps=7)
    assert [r.step for r in a.history] == [0, 2, 4, 6, 7]
    assert [r.step for r in b.history] == [0, 3, 6, 7]
    assert a.state_key != b.state_key
    assert a.state_dict() == {"version": 1, "last_step": 7, "n_readings": 5}


def test_summary_scalars_reach_trainer_loggers(tmp_path):
    probe = KeywordProbe(fact_pairs(2), ByteTokenizer(), model="model")
    _train([probe], steps=4, logger=CSVLogger(tmp_path, name="csv"), log_every_n_steps=1)
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = [float(r["probes/keyword/mean_log10_p_first"]) for r in rows if r.get("probes/keyword/mean_log10_p_first")]
    expected = [float(r.tensors["logp_first"].mean()) / math.log(10) for r in probe.history[:4]]
    assert logged == pytest.approx(expected, rel=1e-6)


def test_state_dict_round_trip_weights_only(tmp_path):
    probe = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="model")
    _train([probe], steps=3)
    path = tmp_path / "state.pt"
    torch.save(probe.state_dict(), path)
    fresh = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="model")
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.state_dict() == probe.state_dict()
    fresh.load_state_dict({})  # keys missing from older versions fall back to defaults
    assert fresh.state_dict()["last_step"] == -1


def test_bad_model_path_fails_in_setup():
    probe = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="encoder")
    with pytest.raises(ValueError, match="no attribute path 'encoder'"):
        _train([probe], steps=1)


def test_identity_check_catches_a_leaky_probe(monkeypatch):
    """Mutation: a probe pass left in train mode (dropout draws RNG) changes the trajectory."""
    import contextlib

    import probes.core.reader as kp

    @contextlib.contextmanager
    def leaky(module):
        with torch.no_grad():
            yield  # no eval(), no RNG restore

    base, _ = _train([], dropout=0.2, steps=6)
    monkeypatch.setattr(kp, "isolated_eval", leaky)
    probed, _ = _train([KeywordProbe(fact_pairs(), ByteTokenizer(), model="model")], dropout=0.2, steps=6)
    assert probed.losses != base.losses


def test_probe_pickles_after_reading(tiny_gpt):
    import pickle

    probe = KeywordProbe(fact_pairs(1), ByteTokenizer())
    before = probe.read(tiny_gpt).logp_seq
    clone = pickle.loads(pickle.dumps(probe))  # e.g. ddp_spawn pickles callbacks
    assert torch.equal(clone.read(tiny_gpt).logp_seq, before)


def test_final_reading_carries_the_epoch_of_its_weights():
    probe = KeywordProbe(fact_pairs(1), ByteTokenizer(), model="model")
    pl.seed_everything(0)
    trainer = fast_trainer([probe], max_epochs=2)
    trainer.fit(TinyLM(CFG), corpus_loader(n_windows=24, batch_size=8, block_size=32))  # 3 batches per epoch
    assert trainer.current_epoch == 2  # Lightning counts completed epochs at the end
    assert [(r.step, r.epoch) for r in probe.history] == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (6, 1)]
