"""Resume: train 30 steps with a checkpoint at step 20, SIGKILL the process at step 25, resume from
the step-20 checkpoint to step 30. Through the reader the log holds every step 0..30 exactly once,
with the values (baselines, priming scores, formats, keyword probabilities) of an uninterrupted run.

Epochs are 10 steps long, so the step-20 checkpoint sits at an epoch boundary: Lightning replays a
non-resumable dataloader from the start of the epoch when it resumes mid-epoch (it warns), which
would change the data, not the probes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from probes.runlog import open_run

from ._compare import compare_runs
from .conftest import COMMON, LAUNCH_TIMEOUT, SCRIPT, run_one_process
from .launch import launch

pytestmark = pytest.mark.timeout(300)

SOURCES = ("keyword", "priming", "format_scored", "format_rollout")
KILL = ["--kill-at", "25", "--flush-every-n", "3"]  # small shards: some records after step 20 reach disk


def check_resumed(resumed: Path, uninterrupted: Path) -> None:
    run, ref = open_run(resumed / "log"), open_run(uninterrupted / "log")
    for source in SOURCES:
        steps = run.steps(source).tolist()
        assert steps == sorted(set(steps)) == ref.steps(source).tolist(), source  # each step once, no gap
    assert run.steps("keyword").tolist() == list(range(31))
    compare_runs(run, ref, exact=True)  # the same process layout: bit-identical
    for name in ("priming/p_before", "priming/s_prime", "priming/exposures"):
        np.testing.assert_array_equal(run.read(name)[1][-1], ref.read(name)[1][-1])
    # the killed session's records after the checkpoint are on disk but superseded
    killed = open_run(resumed / "log", timeline=0)
    assert killed.last_step() > 19 and killed.status == "running"
    tip = run.timelines[-1]
    assert (tip["parent"], tip["fork_step"], tip["status"]) == (0, 19, "finished")


def test_resume_after_sigkill_one_process(tmp_path, one_process):
    out = tmp_path / "run"
    args = ["--out", str(out), "--devices", "1", "--global-world", "2", *COMMON, *KILL]
    killed = launch(SCRIPT, args, nprocs=1, timeout=LAUNCH_TIMEOUT)
    assert killed.returncodes == [-signal.SIGKILL], killed.describe()
    assert not (out / "rank0.json").exists()  # killed before teardown
    run_one_process(out, "--resume", str(out / "ckpt" / "step20.ckpt"))
    check_resumed(out, one_process["global"])


@pytest.mark.slow  # two 2-rank launches: about 30 s on 2 shared cores
def test_resume_after_sigkill_ddp(tmp_path, ddp_run):
    out = tmp_path / "run"
    base = ["--out", str(out), "--devices", "2", *COMMON]
    killed = launch(SCRIPT, [*base, *KILL], nprocs=2, timeout=LAUNCH_TIMEOUT)
    # every rank SIGKILLs itself (the launcher may reap a rank before or after noticing the other)
    assert -signal.SIGKILL in killed.returncodes and not killed.timed_out, killed.describe()
    assert set(killed.returncodes) <= {-signal.SIGKILL, None}, killed.describe()
    launch(SCRIPT, [*base, "--resume", str(out / "ckpt" / "step20.ckpt")], nprocs=2, timeout=LAUNCH_TIMEOUT).check()
    check_resumed(out, ddp_run[0])


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}/{k}")]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def test_checkpoint_loads_weights_only_with_separate_probe_states(ddp_run):
    """The DDP run's step-20 checkpoint (rank zero's states) unpickles nothing but primitives and tensors."""
    ckpt = torch.load(ddp_run[0] / "ckpt" / "step20.ckpt", weights_only=True, map_location="cpu")
    states = ckpt["callbacks"]
    keys = ["KeywordProbe[keyword]", "PrimingProbe[priming]", "FormatProbe[format_scored]"]
    keys += ["FormatProbe[format_rollout]", "RunLog[runlog]", "ProbeExpectations[format_rollout]"]
    for key in keys:
        state = states[key]
        assert isinstance(state["version"], int) and state["version"] >= 1, key
        for path, leaf in leaves(state):
            assert leaf is None or isinstance(leaf, (bool, int, float, str, torch.Tensor)), (key, path, type(leaf))
    # the two FormatProbes keep their own state under their own names
    scored, rollout = states["FormatProbe[format_scored]"], states["FormatProbe[format_rollout]"]
    assert scored["collapse"] != rollout["collapse"]
    assert not torch.equal(scored["first_dist"], rollout["first_dist"])
    assert states["PrimingProbe[priming]"]["applied"].tolist() == [4, 2]  # pooled over both ranks, 2 epochs
    assert states["RunLog[runlog]"]["last_step"] == 19
    # each state restores into a fresh probe of the same definition and round-trips
    from . import ddp_train

    for probe in ddp_train.make_probes():
        state = states[probe.state_key]
        probe.load_state_dict(state)
        again = probe.state_dict()
        assert [path for path, _ in leaves(again)] == [path for path, _ in leaves(state)]
        for (path, a), (_, b) in zip(leaves(again), leaves(state)):
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, (probe.state_key, path)
