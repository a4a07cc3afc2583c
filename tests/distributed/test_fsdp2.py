"""FSDP2 (``fully_shard`` under Lightning's ModelParallelStrategy) on two CPU ranks over gloo.

Sharded-parameter strategies do not shard the probe set: every rank runs the same probe forwards,
so the all-gathers FSDP2 performs inside them match across ranks. Two wrappings:

* ``inner``: each block and the language model are ``fully_shard``-ed; the probe's call to the
  model gathers the parameters itself. FSDP2 keeps the *root* module gathered after a forward, so
  the reader reshards it afterwards; without that, the next training forward used the stale
  gathered copy instead of the updated parameters (the weights drifted by 2e-2 in 30 steps).
* ``root``: only the LightningModule is sharded, an ancestor of the probed model; the reader
  all-gathers it around the probe's forward (``probes.core.reader.fsdp2_gathered``).

Both must train exactly like one process accumulating the two ranks' micro-batches, and log exactly
its values (the probe set is not sharded, so even the padding is the same).
"""

from __future__ import annotations

import pytest
import torch

from probes.runlog import open_run

from ._compare import compare_runs
from .conftest import COMMON, LAUNCH_TIMEOUT, SCRIPT
from .launch import launch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # a 2-rank launch each: ~15 s on 2 shared cores


@pytest.mark.parametrize("wrap", ["inner", "root"])
def test_fsdp2_logs_exactly_the_one_process_values(tmp_path, one_process, wrap):
    out = tmp_path / wrap
    args = ["--out", str(out), "--devices", "2", "--strategy", f"fsdp2-{wrap}", *COMMON]
    launch(SCRIPT, args, nprocs=2, timeout=LAUNCH_TIMEOUT).check()
    ref = one_process["accumulate"]
    got_w = torch.load(out / "weights_rank0.pt", weights_only=True)
    ref_w = torch.load(ref / "weights_rank0.pt", weights_only=True)
    assert all(torch.equal(got_w[k], ref_w[k]) for k in ref_w)  # the probe left training untouched
    compare_runs(open_run(out / "log"), open_run(ref / "log"), exact=True)
