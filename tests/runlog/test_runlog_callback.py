"""The RunLog callback in real (tiny) Lightning runs: flushing, crash status, resume, rank zero."""

from __future__ import annotations

import types

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from runlog_testlib import StepProbe, history_array, keyword_probe, step_values, tiny_loader, tiny_module, trainer

from probes.callbacks.run_log import RunLog
from probes.runlog import RunLogError, open_run


class Crash(pl.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        if trainer.global_step == self.at:
            raise RuntimeError("boom")


def test_log_matches_probe_history_and_flushes_every_n(tmp_path):
    kw, sp = keyword_probe(), StepProbe()
    seen = []
    log = RunLog(tmp_path, flush_every_n=5, background=False, run_info={"lr": 0.003}, on_flush=seen.append)
    trainer([kw, sp, log], max_steps=6).fit(tiny_module(), tiny_loader())
    run = open_run(tmp_path)
    assert run.sources() == ["keyword", "step"] and run.status == "finished"
    for name in ("p_first", "logp_first", "logp_seq", "rank"):
        steps, values = run.read(f"keyword/{name}")
        ref_steps, ref_values = history_array(kw, name)
        np.testing.assert_array_equal(steps, ref_steps)
        np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(run.steps("step"), np.arange(7))  # 6 updates + the final reading
    np.testing.assert_array_equal(run.read("step/value")[1], np.stack([step_values(s)["value"] for s in range(7)]))
    assert run.describe("keyword")["probe_set"]["pairs"][0]["name"] == "colour:sand"
    assert run.info["run"]["lr"] == 0.003 and run.info["run"]["max_steps"] == 6
    # 14 records, flushed at 5 and 10, the remaining 4 with the final status at teardown
    assert [(i.n_records, i.status) for i in seen] == [(5, "running"), (5, "running"), (4, "finished")]


def test_exception_flushes_and_marks_failed(tmp_path):
    sp = StepProbe()
    with pytest.raises(RuntimeError, match="boom"):
        trainer([sp, RunLog(tmp_path, flush_every_n=1000), Crash(3)], max_steps=50).fit(tiny_module(), tiny_loader())
    run = open_run(tmp_path)
    assert run.status == "failed"
    np.testing.assert_array_equal(run.steps("step"), [0, 1, 2])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`", "ignore:You're resuming from a checkpoint")
def test_resume_supersedes_the_abandoned_timeline(tmp_path):
    run_dir, ckpts = tmp_path / "run", tmp_path / "ckpt"
    # A: checkpoints after updates 5 and 10, crashes after update 11
    a_kw, a_sp = keyword_probe(), StepProbe(tag=1)
    tr = trainer([a_kw, a_sp, RunLog(run_dir, flush_every_n=4), Crash(11)], max_steps=50, checkpoint_dir=ckpts)
    with pytest.raises(RuntimeError, match="boom"):
        tr.fit(tiny_module(), tiny_loader())
    a_files = {p.name: p.read_bytes() for p in run_dir.glob("shard-*")}
    state = torch.load(ckpts / "step=5.ckpt", weights_only=True)["callbacks"]["RunLog[runlog]"]
    assert state == {"version": 1, "dirpath": str(run_dir), "timeline": 0, "last_step": 4, "next_seq": 3}
    np.testing.assert_array_equal(open_run(run_dir).steps("step"), np.arange(11))

    # B: resumes from step 5 with other data, so its readings differ from A's
    b_kw, b_sp = keyword_probe(), StepProbe(tag=2)
    trainer([b_kw, b_sp, RunLog(run_dir, flush_every_n=4)], max_steps=9).fit(
        tiny_module(seed=1), tiny_loader(seed=1), ckpt_path=ckpts / "step=5.ckpt"
    )
    run = open_run(run_dir)
    steps, tags = run.read("step/tag")
    np.testing.assert_array_equal(steps, np.arange(10))  # no gap, no duplicate
    np.testing.assert_array_equal(tags, [1] * 5 + [2] * 5)
    steps, logp = run.read("keyword/logp_seq")
    _, a_logp = history_array(a_kw, "logp_seq")
    b_steps, b_logp = history_array(b_kw, "logp_seq")
    np.testing.assert_array_equal(b_steps, np.arange(5, 10))
    np.testing.assert_array_equal(logp, np.concatenate([a_logp[:5], b_logp]))
    assert not np.array_equal(a_logp[5:10], b_logp)  # the test can tell the timelines apart
    assert {p.name: p.read_bytes() for p in run_dir.glob("shard-*") if p.name in a_files} == a_files
    np.testing.assert_array_equal(open_run(run_dir, timeline=0).read("step/tag")[0], np.arange(11))

    # C: resumes A's later checkpoint: B's branch leaves the view entirely
    trainer([keyword_probe(), StepProbe(tag=3), RunLog(run_dir)], max_steps=12).fit(
        tiny_module(), tiny_loader(), ckpt_path=ckpts / "step=10.ckpt"
    )
    run = open_run(run_dir)
    steps, tags = run.read("step/tag")
    np.testing.assert_array_equal(steps, np.arange(13))
    np.testing.assert_array_equal(tags, [1] * 10 + [3] * 3)
    assert [t["in_view"] for t in run.timelines] == [True, False, True]


def test_second_fit_continues_the_same_log(tmp_path):
    sp, log = StepProbe(), RunLog(tmp_path, flush_every_n=3)
    module, tr = tiny_module(), trainer([sp, log], max_steps=4)
    tr.fit(module, tiny_loader())
    tr.fit_loop.epoch_loop.max_steps = 8
    tr.fit(module, tiny_loader())
    run = open_run(tmp_path)
    np.testing.assert_array_equal(run.read("step/value")[0], np.arange(9))


def test_refuses_to_mix_a_fresh_run_into_an_existing_log(tmp_path):
    trainer([StepProbe(), RunLog(tmp_path)], max_steps=2).fit(tiny_module(), tiny_loader())
    with pytest.raises(RunLogError, match="already holds a run log") as err:
        trainer([StepProbe(), RunLog(tmp_path)], max_steps=2).fit(tiny_module(), tiny_loader())
    # the advice is one a RunLog user can follow (RunLog has no `branch=`)
    message = str(err.value)
    assert "branch=" not in message and "version='auto'" in message and "ckpt_path" in message


def test_sigterm_marks_the_run_interrupted(tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class Terminated(StepProbe):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            if trainer.global_step == 2:
                raise SIGTERMException  # what Lightning's fit loop raises after a SIGTERM

    with pytest.raises(SIGTERMException):
        trainer([Terminated(), RunLog(tmp_path)], max_steps=5).fit(tiny_module(), tiny_loader())
    assert open_run(tmp_path).status == "interrupted"


def test_only_rank_zero_subscribes(tmp_path):
    sp = StepProbe()
    log = RunLog(tmp_path)
    log.setup(types.SimpleNamespace(is_global_zero=False, callbacks=[sp, log]), None, "fit")  # type: ignore[arg-type]
    assert sp._sinks == []
    log.setup(types.SimpleNamespace(is_global_zero=True, callbacks=[sp, log]), None, "fit")  # type: ignore[arg-type]
    assert sp._sinks == [log]


def test_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="`flush_every_n` to be a positive int, got 0"):
        RunLog(tmp_path, flush_every_n=0)
    with pytest.raises(ValueError, match="`dirpath` to be a non-empty path, got ''"):
        RunLog("")
    a, b = RunLog(tmp_path / "a"), RunLog(tmp_path / "b")
    with pytest.raises(ValueError, match="Two RunLog callbacks share the name 'runlog'"):
        a.setup(types.SimpleNamespace(is_global_zero=True, callbacks=[a, b]), None, "fit")  # type: ignore[arg-type]


def test_version_auto_numbers_runs_and_a_resume_keeps_its_directory(tmp_path):
    first = RunLog(tmp_path, version="auto")
    trainer([StepProbe(), first], max_steps=2).fit(tiny_module(), tiny_loader())
    second = RunLog(tmp_path, version="auto")  # re-running the script: no collision
    trainer([StepProbe(), second], max_steps=3).fit(tiny_module(), tiny_loader())
    assert first.dirpath == tmp_path / "version_0" and second.dirpath == tmp_path / "version_1"
    assert open_run(tmp_path / "version_0").last_step() == 2 and open_run(tmp_path / "version_1").last_step() == 3
    resumed = RunLog(tmp_path, version="auto")
    resumed.load_state_dict(first.state_dict())  # what resuming from first's checkpoint does
    assert resumed.dirpath == tmp_path / "version_0"
    assert RunLog(tmp_path, version=7).dirpath == tmp_path / "version_7"
    with pytest.raises(ValueError, match="version"):
        RunLog(tmp_path, version="latest")
