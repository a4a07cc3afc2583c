"""ThoughtGainProbe against one-item-at-a-time forwards, and its EMA baseline against a hand-kept EMA."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from probes.integrations.loop import ProbeLoop
from probes.thought.probe import ThoughtGainProbe

ITEMS = [
    ("sum", "Q: 2 + 3 =", "two and three make five", "A: 5"),
    ("sky", "Q: the sky is", "it is day and clear", "A: blue"),
    ("noise", "Q: the sky is", "zebra quartz", "A: blue"),
]
CFG = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=64)


def logp(model, context: list[int], target: list[int]) -> float:
    """log p(target | context): one unpadded forward, explicit sum over the target tokens (float64)."""
    ids = torch.tensor([context + target])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids)[0].double(), dim=-1)
    return sum(lp[len(context) - 1 + j, t].item() for j, t in enumerate(target))


def reference(model, tok, start):
    out = []
    for _, c, z, x in ITEMS:
        ctx, joint = tok.encode(c), tok.encode(c + " " + z)
        cont = tok.encode(c + " " + z + " " + x)[len(joint):]
        assert tok.encode(" " + x) == cont  # bytes: no merges at the boundary
        out.append((logp(model, start + joint, cont), logp(model, start + ctx, cont), len(cont)))
    return out


def test_gain_matches_one_item_at_a_time():
    torch.manual_seed(0)
    model = TinyGPT(CFG).eval()
    tok = ByteTokenizer()
    probe = ThoughtGainProbe(ITEMS, tok, bos_id=10)
    got = probe.read(model)
    for i, (lt, lp, n) in enumerate(reference(model, tok, [10])):
        assert got.logp_thought[i].item() == pytest.approx(lt, rel=1e-5)
        assert got.logp_plain[i].item() == pytest.approx(lp, rel=1e-5)
        assert got.gain[i].item() == pytest.approx(lt - lp, rel=1e-5, abs=1e-5)
        assert got.gain_per_token[i].item() == pytest.approx((lt - lp) / n, rel=1e-5, abs=1e-5)
    assert got.tensors()["mean_gain"].item() == pytest.approx(got.gain.mean().item())


def test_ema_baseline_matches_a_hand_kept_ema_over_a_loop():
    torch.manual_seed(0)
    model = TinyGPT(CFG)
    tok = ByteTokenizer()
    decay = 0.5
    probe = ThoughtGainProbe(ITEMS, tok, bos_id=10, ema_decay=decay)
    ema = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    expected = {}
    with ProbeLoop([probe], model) as loop:
        for step in range(4):
            if step > 0:  # the EMA after `step` updates
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), model.parameters()):
                        e.mul_(decay).add_(p, alpha=1 - decay)
            expected[step] = [lt - logp(ema, [10, *tok.encode(c)], tok.encode(" " + x))
                              for (lt, _, _), (_, c, _, x) in zip(reference(model, tok, [10]), ITEMS)]
            ids = torch.randint(0, 256, (4, 16), generator=gen)
            logits = model(ids[:, :-1])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    assert [r.step for r in probe.history] == [0, 1, 2, 3, 4]
    for r in probe.history[:4]:
        assert r.tensors["gain_ema"].tolist() == pytest.approx(expected[r.step], rel=1e-5, abs=1e-5)
    first = probe.history[0].tensors
    assert torch.allclose(first["gain_ema"], first["gain"])  # the EMA starts as the weights
    buf = io.BytesIO()
    torch.save(probe.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["version"] == 1 and state["ema_step"] == 4 and "tok.weight" in state["ema"]
    fresh = ThoughtGainProbe(ITEMS, tok, bos_id=10, ema_decay=decay)
    fresh.load_state_dict(state)
    assert fresh._loaded_ema is not None and torch.equal(fresh._loaded_ema["tok.weight"], state["ema"]["tok.weight"])


def test_bad_input():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match="all be text or all be token ids"):
        ThoughtGainProbe([("a", "ctx", [1, 2], "x")], tok)
    with pytest.raises(ValueError, match="ema_decay"):
        ThoughtGainProbe(ITEMS, tok, ema_decay=1.5)
    with pytest.raises(ValueError, match="Duplicate"):
        ThoughtGainProbe([ITEMS[0], ITEMS[0]], tok)


def test_views_round_trip(tmp_path):
    import numpy as np

    from probes.thought.view import assert_gain_above
    from tests.signal_views import round_trip

    torch.manual_seed(0)
    model = TinyGPT(CFG)
    probe = ThoughtGainProbe(ITEMS, ByteTokenizer(), bos_id=10, ema_decay=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ProbeLoop([probe], model, run_log=tmp_path / "loop") as loop:
        for _ in range(2):
            ids = torch.randint(0, 256, (2, 16))
            logits = model(ids[:, :-1])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    out = round_trip(probe, tmp_path)
    gain = np.stack([r.tensors["gain"].numpy() for r in probe.history])
    sec = out["section"]
    assert sec["n_items"] == 3 and sec["mean_gain"] == pytest.approx(float(gain[-1].mean()))
    assert sec["items"][0]["gain"] == pytest.approx(float(gain[-1].max()))
    assert sec["items"][0]["gain_ema"] is not None
    assert "information gain" in out["dashboard"] and out["replay"].startswith("mean gain")
    lowest = float(gain.min())
    assert_gain_above(tmp_path / "loop", lowest - 1e-9)
    with pytest.raises(AssertionError, match="not above"):
        assert_gain_above(tmp_path / "loop", lowest)
