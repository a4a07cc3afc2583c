"""``distributed_collectives``: the HF adapter's gather, sum and any-rank over ``torch.distributed``,
run on two CPU processes (gloo) in a subprocess, against the values each rank contributed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    def work(rank, out, port):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        from probes.integrations.hf import distributed_collectives
        c = distributed_collectives()
        mine = torch.tensor([[rank + 0.5, 10.0 * rank]], dtype=torch.float64)
        got = {
            "rank": c["rank"], "world": c["world_size"],
            "gather": c["gather"](mine).tolist(),
            "sum": c["reduce_sum"](torch.tensor([rank + 1, 7])).tolist(),
            "any_true": c["any_rank"](rank == 1), "any_false": c["any_rank"](False),
        }
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(got, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(work, args=(sys.argv[1], int(sys.argv[2])), nprocs=2)
    """
)


def test_collectives_over_two_gloo_processes(tmp_path: Path) -> None:
    from tests.distributed.launch import free_port

    script = tmp_path / "collectives.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(free_port())], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["rank"] == rank and got["world"] == 2
        assert got["gather"] == [[[0.5, 0.0]], [[1.5, 10.0]]]  # [world, *shape], rank order
        assert got["sum"] == [3, 14]
        assert got["any_true"] is True and got["any_false"] is False


def test_one_process_has_no_collectives() -> None:
    from probes.integrations.hf import distributed_collectives

    assert distributed_collectives() == {"rank": 0, "world_size": 1, "gather": None, "reduce_sum": None,
                                         "any_rank": None}
