"""RefinementProbe against one-item-at-a-time perplexities and the accept rule computed by hand."""

from __future__ import annotations

import io
import math

import pytest
import torch

from probes.demos import ByteTokenizer, GPTConfig, TinyGPT
from probes.frontier.probe import RefinementProbe, accept_refinement
from probes.integrations.loop import ProbeLoop

SAMPLES = [
    ("sand", "Q: what colour is sand?", "A: yellow", "A: sand is yellow"),
    ("honey", "Q: what taste has honey?", "A: sweet", "A: qzx vvk jjp"),
    ("sky", "Q: what colour is the sky?", "A: blue", "A: blue"),
]
CFG = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=64)


def ppl(model, context: list[int], target: list[int]) -> float:
    ids = torch.tensor([context + target])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids)[0].double(), dim=-1)
    return math.exp(-sum(lp[len(context) - 1 + j, t].item() for j, t in enumerate(target)) / len(target))


def by_hand(model, tok, start, q, a):
    ifd = ppl(model, start + tok.encode(q), tok.encode(" " + a)) / ppl(model, start, tok.encode(" " + a))
    r_ifd = ppl(model, start + tok.encode(a + "\n"), tok.encode(q)) / ppl(model, start, tok.encode(q))
    return ifd, r_ifd


def test_matches_one_item_at_a_time_and_the_rule():
    torch.manual_seed(0)
    model = TinyGPT(CFG).eval()
    tok = ByteTokenizer()
    probe = RefinementProbe(SAMPLES, tok, bos_id=10, prefix=". ")
    t = probe.read(model).tensors()
    start = [10, *tok.encode(". ")]
    for i, (_, q, a, a_star) in enumerate(SAMPLES):
        io_, ro = by_hand(model, tok, start, q, a)
        ir, rr = by_hand(model, tok, start, q, a_star)
        assert t["ifd_original"][i].item() == pytest.approx(io_, rel=1e-5)
        assert t["r_ifd_original"][i].item() == pytest.approx(ro, rel=1e-5)
        assert t["ifd_refined"][i].item() == pytest.approx(ir, rel=1e-5)
        assert t["r_ifd_refined"][i].item() == pytest.approx(rr, rel=1e-5)
        assert t["d_ifd"][i].item() == pytest.approx(ir - io_, rel=1e-5, abs=1e-6)
        assert t["d_r_ifd"][i].item() == pytest.approx(rr - ro, rel=1e-5, abs=1e-6)
        accept = rr < ro and ir < 1 and rr < 1
        if abs(rr - ro) > 1e-5:  # away from the tie, the decision is the hand rule's
            assert bool(t["accepted"][i]) == accept and bool(t["preferred"][i]) == (rr < ro)
    assert not t["preferred"][2]  # an unchanged response is never preferred (equal r-IFD)
    assert t["accepted_fraction"].item() == pytest.approx(t["accepted"].float().mean().item())


def test_rule_by_hand():
    ifd_r = torch.tensor([0.5, 0.5, 1.2, 0.5, math.nan])
    r_o = torch.tensor([0.9, 0.7, 0.9, 0.95, 0.9])
    r_r = torch.tensor([0.8, 0.8, 0.8, 1.1, 0.8])
    preferred, accepted = accept_refinement(ifd_r, r_o, r_r)
    assert preferred.tolist() == [True, False, True, False, True]
    assert accepted.tolist() == [True, False, False, False, False]


def test_over_a_loop_and_state():
    torch.manual_seed(0)
    model = TinyGPT(CFG)
    probe = RefinementProbe(SAMPLES, ByteTokenizer(), bos_id=10, every_n_steps=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ProbeLoop([probe], model) as loop:
        for _ in range(3):
            ids = torch.randint(0, 256, (2, 16))
            logits = model(ids[:, :-1])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    assert [r.step for r in probe.history] == [0, 2, 3]
    buf = io.BytesIO()
    torch.save(probe.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == {"version": 1, "last_step": 3, "n_readings": 3}


def test_bad_input():
    with pytest.raises(ValueError, match="all be text or all be token ids"):
        RefinementProbe([("a", "q", [1], "r")], ByteTokenizer(), bos_id=10)
    with pytest.raises(ValueError, match="needs start tokens"):
        RefinementProbe(SAMPLES, ByteTokenizer())


def test_views_round_trip(tmp_path):
    import numpy as np

    from probes.frontier.view import assert_accepted_at_least
    from tests.signal_views import round_trip

    torch.manual_seed(0)
    model = TinyGPT(CFG)
    probe = RefinementProbe(SAMPLES, ByteTokenizer(), bos_id=10)
    with ProbeLoop([probe], model, run_log=tmp_path / "loop"):
        pass  # one final reading
    out = round_trip(probe, tmp_path)
    acc = probe.history[-1].tensors["accepted"].numpy()
    sec = out["section"]
    assert sec["accepted_fraction"] == pytest.approx(float(acc.mean()))
    assert sec["accepted"] == [s[0] for s, a in zip(SAMPLES, acc) if a]
    assert sec["samples"][0]["r_ifd_refined"] == pytest.approx(probe.history[-1].tensors["r_ifd_refined"][0].item())
    assert "refinements accepted" in out["dashboard"] and out["replay"].startswith("accepted ")
    assert_accepted_at_least(tmp_path / "loop", float(acc.mean()))
    if acc.mean() < 1:
        with pytest.raises(AssertionError, match="accepted fraction"):
            assert_accepted_at_least(tmp_path / "loop", 1.0)
    assert np.isfinite(probe.history[-1].tensors["d_r_ifd"].numpy()).all()
