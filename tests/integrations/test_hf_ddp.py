"""The HF adapter under DDP: a ``transformers.Trainer`` on two CPU ranks (gloo, ``torch.distributed.run``)
records what one process records with the same global batch (the probe set sharded and gathered,
exposures summed over ranks); rank 0 alone writes the run log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).with_name("hf_ddp_train.py")


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_ranks_record_what_one_process_records(tmp_path: Path) -> None:
    from probes import open_run
    from tests.distributed.launch import free_port

    _run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "8"])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
          str(SCRIPT), str(tmp_path / "two"), "4"])
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank holds the gathered records
    for source, records in one.items():
        assert [r["step"] for r in ranks[0][source]] == [r["step"] for r in records] == [0, 1, 2, 3, 4]
        for ra, rb in zip(records, ranks[0][source]):
            for name, value in ra.items():
                # DDP averages gradients in another order than one process sums them: float32 rounding
                np.testing.assert_allclose(np.asarray(rb[name], dtype=float), np.asarray(value, dtype=float),
                                           rtol=1e-5, atol=1e-5, err_msg=f"{source}/{name} step {ra['step']}")
    assert one["priming"][-1]["exposures"] == ranks[0]["priming"][-1]["exposures"] == [1]  # summed over ranks
    run = open_run(tmp_path / "two" / "run")
    assert run.status == "finished" and run.info["run"]["world_size"] == 2
    assert list(run.read("keyword/logp_seq")[0]) == [0, 1, 2, 3, 4]
