"""Fixtures of the distributed tests: the DDP run (two CPU processes over gloo, launched by
:mod:`launch` from a subprocess, never inside pytest) and the one-process references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .launch import launch

SCRIPT = Path(__file__).with_name("ddp_train.py")
#: 30 steps, 10 per epoch, per-rank batch 4 (global batch 8), a checkpoint at step 20
COMMON = ["--batch", "4", "--steps", "30", "--epoch-steps", "10", "--ckpt-every", "20", "--flush-every-n", "16"]
LAUNCH_TIMEOUT = 150.0  # seconds; a healthy 2-rank run takes 10-20 s on 2 shared cores


def run_one_process(out: Path, *extra: str) -> Path:
    """The training script's ``main`` in this process (one process, no collectives)."""
    from . import ddp_train

    ddp_train.main(["--out", str(out), "--devices", "1", "--global-world", "2", *COMMON, *extra])
    return out


def load_rank(out: Path, rank: int) -> dict[str, Any]:
    return json.loads((out / f"rank{rank}.json").read_text())


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Two DDP ranks: KeywordProbe, PrimingProbe, FormatProbe (scored and rollout), RunLog."""
    out = tmp_path_factory.mktemp("ddp")
    result = launch(SCRIPT, ["--out", str(out), "--devices", "2", *COMMON], nprocs=2, timeout=LAUNCH_TIMEOUT)
    result.check()
    return out, result


@pytest.fixture(scope="session")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-process runs of the same global batch: ``"global"`` trains on the 8 rows at once,
    ``"accumulate"`` on each rank's 4 rows as two accumulated micro-batches (DDP's gradient sum)."""
    return {
        "global": run_one_process(tmp_path_factory.mktemp("one_global")),
        "accumulate": run_one_process(tmp_path_factory.mktemp("one_accumulate"), "--accumulate"),
    }
