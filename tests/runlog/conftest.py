"""Fixtures for the run-log tests: one torch thread (the machine is shared), and the crash-test
zygote, started as soon as collection selects the crash test so its Lightning import overlaps
with the tests that run before it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ZYGOTE = Path(__file__).with_name("crash_zygote.py")
_ZYGOTE_KEY = pytest.StashKey[tuple[subprocess.Popen, Path]]()


def _start_zygote() -> tuple[subprocess.Popen, Path]:
    err = Path(tempfile.mkdtemp(prefix="probes-zygote-")) / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(err, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=f, env=env
        )
    return proc, err


def pytest_collection_modifyitems(session, config, items):  # type: ignore[no-untyped-def]
    if any(item.path.name == "test_runlog_sigkill.py" for item in items) and _ZYGOTE_KEY not in config.stash:
        config.stash[_ZYGOTE_KEY] = _start_zygote()


def pytest_unconfigure(config):  # type: ignore[no-untyped-def]
    proc, _ = config.stash.get(_ZYGOTE_KEY, (None, None))
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def crash_zygote(request):  # type: ignore[no-untyped-def]
    """The zygote process (started at collection) and the path of its stderr log."""
    stash = request.config.stash
    if _ZYGOTE_KEY not in stash:
        stash[_ZYGOTE_KEY] = _start_zygote()
    return stash[_ZYGOTE_KEY]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train ~20x faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
