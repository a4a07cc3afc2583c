"""IFDProbe against a direct two-pass computation (one forward per conditioned/unconditioned text)."""

from __future__ import annotations

import math

import pytest
import torch

from probes.callbacks import IFDProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from tests.helpers import fast_trainer

SAMPLES = [
    ("sand", "Q: what colour is sand?", "A: yellow"),
    ("honey", "Q: what taste has honey?", "A: sweet"),
    ("thunder", "Q: how does thunder sound?", "A: loud"),
]


def direct_ppl(model, context: list[int], target: list[int]) -> float:
    """PPL of ``target`` after ``context``: one unpadded forward, mean NLL over the target tokens."""
    ids = torch.tensor([context + target])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0].double(), dim=-1)
    nll = [-logp[len(context) - 1 + j, tok].item() for j, tok in enumerate(target)]
    return math.exp(sum(nll) / len(nll))


@pytest.mark.parametrize("reverse", [True, False])
def test_ifd_matches_direct_two_pass_computation(tiny_gpt, reverse):
    tok = ByteTokenizer()
    probe = IFDProbe(SAMPLES, tok, prefix=". ", bos_id=10, reverse=reverse, reverse_template="{answer}\n")
    calls = []
    handle = tiny_gpt.register_forward_hook(lambda m, i, o: calls.append(1))
    got = probe.read(tiny_gpt)
    handle.remove()
    assert len(calls) == 1  # conditioned and unconditioned items share one batched pass
    start = [10, *tok.encode(". ")]
    for i, (_, instruction, answer) in enumerate(SAMPLES):
        # the separator (" ") is scored with the answer, in both passes
        a_given_q = direct_ppl(tiny_gpt, start + tok.encode(instruction), tok.encode(" " + answer))
        a_alone = direct_ppl(tiny_gpt, start, tok.encode(" " + answer))
        assert got.ppl_answer_cond[i].item() == pytest.approx(a_given_q, rel=1e-4)
        assert got.ppl_answer[i].item() == pytest.approx(a_alone, rel=1e-4)
        assert got.ifd[i].item() == pytest.approx(a_given_q / a_alone, rel=1e-4)
        assert got.flagged[i].item() == (a_given_q / a_alone >= 1)
        if reverse:
            q_given_a = direct_ppl(tiny_gpt, start + tok.encode(answer + "\n"), tok.encode(instruction))
            q_alone = direct_ppl(tiny_gpt, start, tok.encode(instruction))
            assert got.r_ifd[i].item() == pytest.approx(q_given_a / q_alone, rel=1e-4)
            assert got.ppl_instruction[i].item() == pytest.approx(q_alone, rel=1e-4)
        else:
            assert got.r_ifd is None
    names = set(got.tensors())
    assert ("r_ifd" in names) == reverse and {"ifd", "flagged", "frac_flagged"} <= names


def test_ifd_is_logged_over_a_fit():
    probe = IFDProbe(SAMPLES, ByteTokenizer(), prefix=". ", model="model", every_n_steps=2)
    module = TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))
    trainer = fast_trainer([probe], max_steps=3, max_epochs=1)
    trainer.fit(module, corpus_loader(n_windows=24, batch_size=8, block_size=32))
    assert [r.step for r in probe.history] == [0, 2, 3]
    last = probe.history[-1].tensors
    assert last["ifd"].shape == (3,) and last["frac_flagged"].shape == ()
    assert last["frac_flagged"].item() == pytest.approx(last["flagged"].float().mean().item())
    assert not torch.equal(probe.history[0].tensors["ifd"], last["ifd"])  # the weights moved
    assert probe.state_dict() == {"version": 1, "last_step": 3, "n_readings": 3}
    assert probe.describe()["start_ids"] == list(b". ")


def test_ifd_bad_input():
    tok = ByteTokenizer()
    with pytest.raises(ValueError, match=r"needs start tokens.*`bos_id=`.*`prefix=`"):
        IFDProbe(SAMPLES, tok)
    with pytest.raises(ValueError, match="IFD sample 'x': expected `answer` to be non-empty"):
        IFDProbe([("x", "Q: hi", "  ")], tok, prefix=". ")
    with pytest.raises(ValueError, match="Duplicate IFD sample name 'a'"):
        IFDProbe([("a", "q", "r"), ("a", "q2", "r2")], tok, prefix=". ")
    with pytest.raises(ValueError, match="containing '\\{answer\\}'"):
        IFDProbe(SAMPLES, tok, prefix=". ", reverse_template="no placeholder")
    with pytest.raises(ValueError, match="placeholder other than"):
        IFDProbe(SAMPLES, tok, prefix=". ", reverse_template="{answer} {question}")
