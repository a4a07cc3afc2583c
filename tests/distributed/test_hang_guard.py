"""The hang guard: a distributed test fails (never hangs) when a collective is mismatched.

Two layers: the training script sets a short torch.distributed timeout so a collective that only
some ranks call raises on the ranks left waiting; and :func:`launch.launch` kills every rank as soon
as one fails, and the whole process group when its own timeout passes.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import SCRIPT
from .launch import launch

pytestmark = pytest.mark.timeout(180)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_mismatched_collective_fails_promptly(tmp_path):
    """Rank 0 alone calls an all-gather at step 2; with a 5 s torch.distributed timeout the run errors."""
    args = ["--out", str(tmp_path), "--devices", "2", "--steps", "6", "--mismatch-at", "2", "--dist-timeout", "5"]
    result = launch(SCRIPT, args, nprocs=2, timeout=120)
    assert not result.ok and not result.timed_out, result.describe()
    assert result.first_failure is not None
    failed = result.outputs[result.first_failure]
    assert "Timed out" in failed or "Connection closed" in failed or "timed out" in failed, failed[-3000:]
    assert result.seconds < 90  # start-up (10-20 s on 2 shared cores) + the 5 s timeout, not 30 minutes
    with pytest.raises(AssertionError, match=rf"rank {result.first_failure} failed after"):
        result.check()
    assert not any(alive(pid) for pid in result.pids)
    assert not (tmp_path / "rank0.json").exists()  # it never reached the end of training


def test_guard_kills_a_hung_launch_and_its_children(tmp_path):
    """A real hang (no torch.distributed timeout at all): the launcher's own timeout kills every
    rank and whatever it started, and reports the timeout."""
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            with open(os.path.join(os.path.dirname(__file__), f"child{os.environ['RANK']}"), "w") as f:
                f.write(str(child.pid))
            time.sleep(600)  # a rank waiting forever in a collective
            """
        )
    )
    t0 = time.monotonic()
    result = launch(script, nprocs=2, timeout=3)
    assert result.timed_out and result.returncodes == [None, None]
    assert 3 <= result.seconds < 10 and time.monotonic() - t0 < 15
    with pytest.raises(AssertionError, match=r"timed out after .*\(hang guard\)"):
        result.check()
    children = [int((tmp_path / f"child{r}").read_text()) for r in range(2)]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in [*result.pids, *children]) and time.monotonic() < deadline:
        time.sleep(0.1)  # orphaned grandchildren are reaped by init
    assert not any(alive(pid) for pid in [*result.pids, *children])


def test_first_failure_stops_the_other_ranks(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import os, sys, time\nif os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(600)\n")
    result = launch(script, nprocs=2, timeout=60)
    assert not result.timed_out
    assert result.first_failure == 1 and result.returncodes == [None, 3]
    assert result.seconds < 10


def test_a_clean_launch_passes_the_environment(tmp_path):
    script = tmp_path / "ok.py"
    keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "NODE_RANK", "OMP_NUM_THREADS"]
    script.write_text(f"import os\nprint(*[os.environ[k] for k in {keys!r}])\n")
    result = launch(script, nprocs=2, timeout=60).check()
    assert [o.split() for o in result.outputs] == [[str(r), str(r), "2", "127.0.0.1", "0", "1"] for r in range(2)]
    assert launch(script, nprocs=1, timeout=60).returncodes == [1]  # no distributed variables for one rank
    assert os.path.exists(sys.executable)
