"""Two DDP ranks (gloo, plain loop) record what one process records on the global batch (1e-5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.distributed.launch import launch

SCRIPT = Path(__file__).with_name("ddp_signals.py")


def close(a: list, b: list) -> bool:
    # abs 1e-5: a gain is a difference of log-likelihoods of weights trained with rank-dependent
    # gradient rounding (measured up to 2.4e-6 apart between 1 and 2 ranks after 3 steps)
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-5, abs=1e-5) for x, y in zip(a, b))


def test_two_ranks_match_one_process(tmp_path):
    from tests.signals_ddp import ddp_signals

    ddp_signals.main(["--out", str(tmp_path / "one"), "--world", "1"])  # the reference, in this process
    result = launch(SCRIPT, ["--out", str(tmp_path / "ddp"), "--world", "2"], nprocs=2, timeout=150)
    result.check()
    ref = json.loads((tmp_path / "one" / "rank0.json").read_text())
    for rank in (0, 1):
        got = json.loads((tmp_path / "ddp" / f"rank{rank}.json").read_text())
        assert set(got) == set(ref) == {"updates", "thought", "frontier"}
        for source, records in ref.items():
            assert [r["step"] for r in got[source]] == [r["step"] for r in records], source
            for mine, want in zip(got[source], records):
                for key, values in want.items():
                    if key != "step":
                        assert close(mine[key], values), (rank, source, mine["step"], key)
