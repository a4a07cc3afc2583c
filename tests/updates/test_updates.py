"""LayerUpdateProbe against a brute-force computation from parameter snapshots (float64)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from probes.callbacks import LayerUpdateProbe
from probes.demos import GPTConfig, TinyGPT, TinyLM, corpus_loader
from probes.integrations.loop import ProbeLoop
from probes.updates.spec import assign_groups, auto_group
from tests.helpers import WeightSnapshots, fast_trainer

CFG = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=32)


def brute_force(names, groups, index, before, after, start):
    """Per-group figures from three snapshots, one tensor at a time, in float64."""
    n = len(groups)
    upd, bef, aft, dri, ref = ([0.0] * n for _ in range(5))
    for name, g in zip(names, index):
        b, a, s = before[name].double(), after[name].double(), start[name].double()
        upd[g] += float(((a - b) ** 2).sum())
        bef[g] += float((b**2).sum())
        aft[g] += float((a**2).sum())
        dri[g] += float(((a - s) ** 2).sum())
        ref[g] += float((s**2).sum())
    total = sum(upd)
    return {
        "update_sq": upd,
        "share": [u / total for u in upd],
        "relative": [math.sqrt(u / b) for u, b in zip(upd, bef)],
        "param_norm": [math.sqrt(a) for a in aft],
        "drift": [math.sqrt(d) for d in dri],
        "drift_relative": [math.sqrt(d / r) for d, r in zip(dri, ref)],
        "update_norm": [math.sqrt(total)],
        "drift_norm": [math.sqrt(sum(dri))],
    }


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("every", [1, 2])
def test_matches_snapshots_with_accumulation_and_clipping(optimizer, every):
    torch.manual_seed(0)
    model = TinyGPT(CFG)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    probe = LayerUpdateProbe(every_n_steps=every)
    names = [n for n, _ in model.named_parameters()]
    groups, index = assign_groups(names)
    start = snapshot(model)
    expected = {}
    gen = torch.Generator().manual_seed(1)
    with ProbeLoop([probe], model) as loop:
        for step in range(1, 5):
            for _ in range(2):  # gradient accumulation: two micro-batches per optimizer step
                ids = torch.randint(0, 256, (4, 16), generator=gen)
                logits = model(ids[:, :-1])
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1)) / 2
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clipping changes the step, not the method
            before = snapshot(model)
            loop.optimizer_step(opt)
            opt.zero_grad()
            if step % every == 0:
                expected[step] = brute_force(names, groups, index, before, snapshot(model), start)
    assert probe.describe()["groups"] == ["embed", "block.00", "block.01", "other"] == groups
    assert [r.step for r in probe.history] == sorted(expected)
    for record in probe.history:
        ref = expected[record.step]
        for metric, want in ref.items():
            got = record.tensors[metric].reshape(-1).tolist()
            assert got == pytest.approx(want, rel=1e-6), (record.step, metric)
        assert record.tensors["share"].sum().item() == pytest.approx(1.0, abs=1e-12)


def test_lightning_labels_and_values_match_snapshots(tmp_path):
    """Under Lightning (AdamW in TinyLM, accumulate_grad_batches=2, gradient_clip_val), record t is
    update t: weights after t-1 updates -> weights after t. A RunLog listed before the probe (it
    subscribes before the probe knows its groups) still gets the groups."""
    from probes.callbacks import RunLog
    from probes.runlog import open_run

    torch.manual_seed(0)
    module = TinyLM(CFG)
    probe = LayerUpdateProbe(model="model")
    snaps = WeightSnapshots()
    log = RunLog(tmp_path)
    trainer = fast_trainer([log, snaps, probe], max_steps=3, accumulate_grad_batches=2, gradient_clip_val=0.5)
    trainer.fit(module, corpus_loader(n_windows=16, batch_size=4, block_size=16))
    names = [n for n, _ in module.model.named_parameters()]
    groups, index = assign_groups(names)
    assert [r.step for r in probe.history] == [1, 2, 3]
    for r in probe.history:
        s = snaps.snapshots
        ref = brute_force(names, groups, index, s[r.step - 1], s[r.step], s[0])
        for metric, want in ref.items():
            assert r.tensors[metric].reshape(-1).tolist() == pytest.approx(want, rel=1e-6), (r.step, metric)
    run = open_run(log.dirpath)
    assert run.describe("updates")["groups"] == groups
    steps, share = run.read("updates/share")
    assert list(steps) == [1, 2, 3] and np.allclose(share, np.stack([r.tensors["share"] for r in probe.history]))


def test_state_dict_versioned_weights_only_and_resume_keeps_the_stage():
    torch.manual_seed(0)
    model = TinyGPT(CFG)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = LayerUpdateProbe()
    start = snapshot(model)
    with ProbeLoop([probe], model) as loop:
        for _ in range(2):
            model(torch.randint(0, 256, (2, 8))).sum().backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    buf = io.BytesIO()
    torch.save(probe.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["version"] == 1 and state["last_step"] == 2 and state["n_readings"] == 2
    assert torch.equal(state["reference"]["tok.weight"], start["tok.weight"])
    # a new probe resumed from the state measures drift from the first stage's start
    resumed = LayerUpdateProbe()
    resumed.load_state_dict(state)
    loop = ProbeLoop([resumed], model)
    loop.step = 2
    with loop:
        model(torch.randint(0, 256, (2, 8))).sum().backward()
        loop.optimizer_step(opt)
    names = [n for n, _ in model.named_parameters()]
    now = snapshot(model)
    want = math.sqrt(sum(float(((now[n].double() - start[n].double()) ** 2).sum()) for n in names))
    assert resumed.history[-1].step == 3
    assert resumed.history[-1].tensors["drift_norm"].item() == pytest.approx(want, rel=1e-6)


def test_groups_auto_and_by_pattern():
    assert auto_group("transformer.h.3.attn.c_attn.weight") == "block.03"
    assert auto_group("model.layers.11.mlp.up_proj.weight") == "block.11"
    assert auto_group("gpt_neox.embed_in.weight") == "embed"
    assert auto_group("transformer.wte.weight") == "embed"
    assert auto_group("lm_head.weight") == "head"
    assert auto_group("model.norm.weight") == "other"
    groups, index = assign_groups(["a.attn.w", "a.mlp.w", "ln.w"], {"attn": r"\.attn\.", "mlp": r"\.mlp\."})
    assert groups == ["attn", "mlp", "other"] and index == [0, 1, 2]
    with pytest.raises(ValueError, match="bad regular expression"):
        LayerUpdateProbe(groups={"x": "("})


def test_views_round_trip(tmp_path):
    from probes.updates.view import assert_share_within, compare_shares
    from tests.signal_views import round_trip

    torch.manual_seed(0)
    model = TinyGPT(CFG)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = LayerUpdateProbe()
    with ProbeLoop([probe], model, run_log=tmp_path / "loop") as loop:
        for _ in range(3):
            model(torch.randint(0, 256, (2, 8))).sum().backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    out = round_trip(probe, tmp_path)
    share = np.stack([r.tensors["share"].numpy() for r in probe.history])
    sec = out["section"]
    assert sec["readings"] == 3 and [g["group"] for g in sec["groups"]] == probe.groups
    for i, g in enumerate(sec["groups"]):
        assert g["mean_share"] == pytest.approx(float(share[:, i].mean()), rel=1e-12)
    assert sec["top_group"] == probe.groups[int(share.mean(axis=0).argmax())]
    assert "update share by layer" in out["dashboard"] and out["replay"].startswith("top ")
    assert_share_within(tmp_path / "loop", "embed", 0.0, 1.0)
    with pytest.raises(AssertionError, match="outside"):
        assert_share_within(tmp_path / "loop", "embed", 0.999, 1.0)
    rows = compare_shares((probe.groups, share), (["embed", "x"], np.array([[0.25, 0.75]])))
    assert rows[0] == {"group": "embed", "share_a": pytest.approx(share[:, 0].mean()), "share_b": 0.25,
                       "difference": pytest.approx(0.25 - share[:, 0].mean())}
    assert rows[-1]["group"] == "x" and rows[-1]["share_a"] == 0.0


def test_live_expectation_fails_fast_under_lightning():
    from probes.testing import ProbeExpectations
    from probes.updates.view import ShareWithin

    torch.manual_seed(0)
    module = TinyLM(CFG)
    probe = LayerUpdateProbe(model="model")
    check = ProbeExpectations([ShareWithin("embed", 0.999, 1.0)])
    trainer = fast_trainer([check, probe], max_steps=3)
    with pytest.raises(AssertionError, match="share of \\|\\|dW\\|\\|\\^2 in group 'embed'.*at step 1"):
        trainer.fit(module, corpus_loader(n_windows=12, batch_size=4, block_size=16))


def test_lightning_resume_keeps_labels_and_the_stage(tmp_path):
    """A fit resumed from a checkpoint labels updates from the restored step (every 2nd update) and
    measures drift from the first fit's start."""
    torch.manual_seed(0)
    module = TinyLM(CFG)
    start = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    probe = LayerUpdateProbe(model="model", every_n_steps=2)
    trainer = fast_trainer([probe], max_steps=2)
    data = corpus_loader(n_windows=24, batch_size=4, block_size=16)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    assert [r.step for r in probe.history] == [2]
    resumed = LayerUpdateProbe(model="model", every_n_steps=2)
    trainer = fast_trainer([resumed], max_steps=4)
    trainer.fit(module, data, ckpt_path=tmp_path / "a.ckpt")
    assert [r.step for r in resumed.history] == [4]
    now = dict(module.model.named_parameters())
    want = math.sqrt(sum(float(((now[n].double() - s.double()) ** 2).sum()) for n, s in start.items()))
    assert resumed.history[-1].tensors["drift_norm"].item() == pytest.approx(want, rel=1e-6)
