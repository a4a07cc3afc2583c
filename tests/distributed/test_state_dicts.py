"""Every callback's checkpoint state: versioned, primitives and tensors only (``weights_only=True``),
defaults for keys missing from older versions; two instances keep separate state; strategies whose
probe forward is unsafe are refused. All in this process (one rank)."""

from __future__ import annotations

import io
import math
import types
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from probes.callbacks import BenchmarkProbe, FormatProbe, IFDProbe, KeywordProbe, PrimingProbe
from probes.callbacks.ignore_topk import IgnoreTopK
from probes.callbacks.live_console import LiveConsole
from probes.callbacks.run_log import RunLog
from probes.choice.spec import Benchmark, BenchmarkSuite
from probes.demos import ByteTokenizer
from probes.integrations.lightning import ProbeCallback
from probes.testing.expectations import NoFormatCollapse, ProbeExpectations

from ..formats._util import ScriptedRollouts, trainer
from . import ddp_train
from .test_resume import leaves

TOK = ByteTokenizer()


def every_callback(tmp_path) -> list[Any]:
    suite = BenchmarkSuite([Benchmark("b", [("the colour of sand is", ["yellow", "blue"], 0)])])
    prompts = ddp_train.PROMPTS
    return [
        KeywordProbe(ddp_train.PAIRS, TOK),
        PrimingProbe(ddp_train.SAMPLES, TOK),
        FormatProbe(ddp_train.FORMATS, mode="rollout"),
        FormatProbe(ddp_train.FORMATS, mode="scored", name="scored", prompts=prompts, tokenizer=TOK),
        FormatProbe(ddp_train.FORMATS, mode="sampled", name="sampled", prompts=prompts, tokenizer=TOK),
        BenchmarkProbe(suite, TOK),
        IFDProbe([("sand", "Q: what colour is sand?", "A: yellow")], TOK, prefix=". "),
        IgnoreTopK(0.1),
        RunLog(tmp_path / "log"),
        ProbeExpectations([NoFormatCollapse()]),
    ]


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    la, lb = leaves(a), leaves(b)
    if [p for p, _ in la] != [p for p, _ in lb]:
        return False
    for (_, x), (_, y) in zip(la, lb):
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x.isnan(), y.isnan())):
                return False
            if not torch.equal(torch.nan_to_num(x), torch.nan_to_num(y)):
                return False
        elif x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            return False
    return True


def test_every_state_is_versioned_primitive_and_loads_weights_only(tmp_path):
    for cb in every_callback(tmp_path):
        state = cb.state_dict()
        assert isinstance(state.get("version"), int) and state["version"] >= 1, cb.state_key
        for path, leaf in leaves(state):
            assert leaf is None or isinstance(leaf, (bool, int, float, str, torch.Tensor)), (cb.state_key, path)
        loaded = roundtrip(state)
        assert same(loaded, state), cb.state_key
        cb.load_state_dict(loaded)
        assert same(cb.state_dict(), state), cb.state_key


def test_states_missing_keys_take_defaults(tmp_path):
    """A state from an older version (here: only a version, or nothing) loads as a fresh one."""
    for old in ({}, {"version": 1}):
        for cb, fresh in zip(every_callback(tmp_path), every_callback(tmp_path)):
            cb.load_state_dict(dict(old))
            expected = fresh.state_dict()
            if isinstance(cb, RunLog):  # RunLog's state describes the writer it has not opened yet
                continue
            assert same(cb.state_dict(), expected), (cb.state_key, old)


def test_newer_state_version_warns(tmp_path):
    for cb in every_callback(tmp_path):
        if isinstance(cb, (ProbeExpectations,)):
            continue  # owned by probes.testing; it reads `failures` only
        state = cb.state_dict()
        state["version"] = 99
        with pytest.warns(UserWarning, match="newer"):
            cb.load_state_dict(state)


def test_format_probe_reads_a_version_1_state():
    probe = FormatProbe(ddp_train.FORMATS, mode="rollout")
    v1 = {"version": 1, "last_step": 7, "n_records": 8, "first_dist": torch.tensor([0.5, 0.5], dtype=torch.float64)}
    v1["collapse"] = {"version": 1, "streak": 2, "streak_format": 0, "collapsed": False}
    probe.load_state_dict(v1)
    state = probe.state_dict()
    assert (state["version"], state["last_step"], state["pooled_n"]) == (2, 7, 0)
    assert state["pooled"].numel() == 0 and state["collapse"]["streak"] == 2


def test_mismatched_definitions_are_refused():
    priming = PrimingProbe(ddp_train.SAMPLES, TOK)
    state = priming.state_dict()
    other = PrimingProbe(ddp_train.SAMPLES[:1], TOK)
    with pytest.raises(ValueError, match=r"tracks samples \['pearl', 'otter'\].*another `name`"):
        other.load_state_dict(state)
    fmt = FormatProbe(ddp_train.FORMATS, mode="rollout").state_dict()
    fewer = FormatProbe(ddp_train.FORMATS.formats[:1], mode="rollout", collapse=None)
    expected = r"tracks formats \['equals', 'ans', 'other'\] but this probe tracks \['equals', 'other'\]"
    with pytest.raises(ValueError, match=expected):
        fewer.load_state_dict(fmt)


ROLLOUT = {"completions": ["= 1", "ans: 2", "= 3"], "rewards": [1.0, 0.0, 1.0]}


def test_rollouts_pooled_before_a_checkpoint_survive_the_resume(tmp_path):
    """Rollout mode with every_n_steps=3 and a checkpoint at step 4: the record at step 5 pools updates 4..6,
    one of which happened before the checkpoint. Resumed, it holds the same 9 completions."""
    script = [ROLLOUT] * 8

    def run(ckpt_path: Any = None) -> FormatProbe:
        probe = FormatProbe(ddp_train.FORMATS, mode="rollout", every_n_steps=3, collapse=None)
        save = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_top_k=-1, filename="s{step}")
        trainer([probe, save], max_steps=7, enable_checkpointing=True).fit(
            ScriptedRollouts(script), ckpt_path=ckpt_path
        )
        return probe

    whole = run()
    assert [(r.step, int(r.tensors["n"])) for r in whole.history] == [(2, 9), (5, 9), (6, 3)]
    resumed = run(next(tmp_path.glob("s*4.ckpt")))
    assert [(r.step, int(r.tensors["n"])) for r in resumed.history] == [(5, 9), (6, 3)]
    for a, b in zip(resumed.history, whole.history[1:]):
        assert all(torch.equal(a.tensors[k].nan_to_num(), b.tensors[k].nan_to_num()) for k in a.tensors)


def test_two_instances_keep_separate_state(tmp_path):
    a = FormatProbe(ddp_train.FORMATS, mode="rollout", name="a", collapse=None)
    b = FormatProbe(ddp_train.FORMATS, mode="rollout", name="b", collapse=None)
    save = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="s{step}")
    module = ScriptedRollouts([ROLLOUT] * 2)
    t = trainer([a, b, save], max_steps=2, enable_checkpointing=True)
    t.fit(module)
    b.schedule.n_readings = 41  # make the two states differ, then save them
    t.save_checkpoint(tmp_path / "last.ckpt")
    states = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    assert states["FormatProbe[a]"]["n_records"] == 2 and states["FormatProbe[b]"]["n_records"] == 41
    c = FormatProbe(ddp_train.FORMATS, mode="rollout", name="b", collapse=None)
    c.load_state_dict(states[c.state_key])
    assert c.state_dict()["n_records"] == 41


def test_two_probes_with_one_name_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="state_key"):  # Lightning: two states under one key
        trainer([KeywordProbe(ddp_train.PAIRS, TOK), KeywordProbe(ddp_train.PAIRS, TOK)])
    clash = [KeywordProbe(ddp_train.PAIRS, TOK, name="x"), PrimingProbe(ddp_train.SAMPLES, TOK, name="x")]
    t = trainer([*clash, RunLog(tmp_path / "log")])
    with pytest.raises(ValueError, match=r"KeywordProbe and PrimingProbe share the name 'x'.*different `name=`"):
        ProbeCallback.probe_callbacks(t)


def test_live_console_has_no_state():
    assert LiveConsole(mode="plain").state_dict() == {}


class DeepSpeedStrategy:  # stands in for lightning's (refused by class name; deepspeed is not installed)
    pass


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_unsafe_strategies_are_refused(strategy):
    from lightning.pytorch.strategies import FSDPStrategy

    progress = types.SimpleNamespace(epoch_progress=types.SimpleNamespace(current=types.SimpleNamespace(started=0)))
    fake = types.SimpleNamespace(
        strategy=FSDPStrategy() if strategy == "fsdp" else DeepSpeedStrategy(),
        global_step=0, world_size=1, loggers=[], current_epoch=0, fit_loop=progress,
    )
    module = ddp_train.ParityLM()
    probes: list[Any] = [
        KeywordProbe(ddp_train.PAIRS, TOK, model="model"),
        PrimingProbe(ddp_train.SAMPLES, TOK, model="model"),
        FormatProbe(ddp_train.FORMATS, mode="scored", prompts=["1+1 "], tokenizer=TOK, model="model"),
        FormatProbe(ddp_train.FORMATS, mode="sampled", prompts=["1+1 "], tokenizer=TOK, model="model"),
    ]
    name = type(fake.strategy).__name__
    for probe in probes:
        with pytest.raises(ValueError, match=rf"cannot run under {name}: .* Use DDPStrategy .* ModelParallelStrategy"):
            probe.setup(fake, module, "fit")  # type: ignore[arg-type]
    rollout = FormatProbe(ddp_train.FORMATS, mode="rollout")  # reads training outputs: no forward of its own
    rollout.setup(fake, module, "fit")  # type: ignore[arg-type]
