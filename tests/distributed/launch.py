"""Launch a script on ``nprocs`` local processes the way ``torchrun`` does, with a hang guard.

Each process gets ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
``NODE_RANK``, so Lightning's DDP strategy joins the group instead of re-launching the script
(which would import Lightning in the children only after the parent has, doubling the start-up
time). All processes start at once, in a new session of their own.

Port races: a port found free here stays unbound until rank 0 creates its store, seconds later
(imports), and other jobs on the machine may take it meanwhile; a rank of one job joining another
job's store mixes their collectives. So each launch also passes ``PROBES_PORT_FILE`` and
``PROBES_JOB_ID``: a cooperating script calls :func:`rendezvous` right before training, which lets
rank 0 pick the port then (milliseconds before binding it) and hands it to the other ranks through
that file; the script can then check that every rank of its group carries the same job id.

The guard: the launch fails, never hangs. As soon as one process exits with an error the others
are killed (a peer stuck in a collective would otherwise wait for the torch.distributed timeout),
and when ``timeout`` seconds pass the whole session is SIGKILLed and the result says it timed out.
Only the standard library is used here, so the pytest process never imports torch.distributed for it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["LaunchResult", "free_port", "launch", "rendezvous"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rendezvous(timeout: float = 120.0) -> None:
    """Inside a launched rank: agree on ``MASTER_PORT`` through ``PROBES_PORT_FILE`` (rank 0 picks a
    free port now and writes it; the others wait for it). Does nothing outside :func:`launch`.

    Raises:
        TimeoutError: rank 0 did not publish a port within ``timeout`` seconds.
    """
    path = os.environ.get("PROBES_PORT_FILE")
    if not path:
        return
    if os.environ.get("RANK", "0") == "0":
        tmp = f"{path}.tmp"
        Path(tmp).write_text(str(free_port()))
        os.replace(tmp, path)  # atomic: readers never see a partial number
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {os.environ.get('RANK')}: no port in {path} after {timeout} s")
        time.sleep(0.01)
    os.environ["MASTER_PORT"] = Path(path).read_text()


@dataclass
class LaunchResult:
    """What :func:`launch` saw: per-rank exit codes (None: killed by the guard; negative: the
    signal that ended it) and output."""

    returncodes: list[Optional[int]]
    outputs: list[str]
    seconds: float
    timed_out: bool
    first_failure: Optional[int] = None  # the rank that failed first, if any
    pids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(rc == 0 for rc in self.returncodes)

    def describe(self, tail: int = 3000) -> str:
        """A failure report: why, every rank's exit code, and the tail of the output of the rank
        that failed first (or of every rank after a timeout)."""
        if self.timed_out:
            head = (
                f"timed out after {self.seconds:.1f} s and was killed (hang guard): a collective called by some"
                " ranks only (e.g. inside rank-zero-only code) waits forever without a torch.distributed timeout"
            )
            ranks = range(len(self.outputs))
        elif self.first_failure is not None:
            head = f"rank {self.first_failure} failed after {self.seconds:.1f} s; the other ranks were stopped"
            ranks = range(self.first_failure, self.first_failure + 1)
        else:
            return f"all {len(self.returncodes)} ranks finished in {self.seconds:.1f} s"
        parts = [f"{head}; exit codes {self.returncodes}"]
        for r in ranks:
            parts.append(f"--- rank {r} output (tail) ---\n{self.outputs[r][-tail:]}")
        return "\n".join(parts)

    def check(self) -> LaunchResult:
        """Return self when every rank exited 0.

        Raises:
            AssertionError: a rank failed or the launch timed out, with :meth:`describe`.
        """
        if not self.ok:
            raise AssertionError(self.describe())
        return self


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    # each child leads its own session (start_new_session), so its process group holds it and
    # anything it started; the group id is the child's pid, which we own
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def launch(
    script: os.PathLike[str] | str,
    args: Sequence[str] = (),
    *,
    nprocs: int = 2,
    timeout: float = 120.0,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[os.PathLike[str] | str] = None,
    grace: float = 0.0,
) -> LaunchResult:
    """Run ``python script *args`` on ``nprocs`` ranks and wait, at most ``timeout`` seconds.

    Args:
        script: the script each rank runs.
        args: its arguments (the same on every rank).
        nprocs: number of ranks (1 runs the script alone, without distributed variables).
        timeout: seconds until every rank is SIGKILLed and the result marked ``timed_out``.
        env: extra environment variables.
        cwd: working directory (default: the current one).
        grace: seconds the other ranks may still run after one failed, to print their own error.

    Returns:
        A :class:`LaunchResult`; call :meth:`LaunchResult.check` to turn failures into errors.
    """
    if nprocs < 1:
        raise ValueError(f"Expected `nprocs` >= 1, got {nprocs}.")
    if not timeout > 0:
        raise ValueError(f"Expected a positive `timeout` in seconds, got {timeout!r}.")
    port = free_port()
    rdzv = tempfile.TemporaryDirectory(prefix="probes-launch-")
    base = dict(os.environ)
    base.setdefault("OMP_NUM_THREADS", "1")
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    logs = [tempfile.TemporaryFile() for _ in range(nprocs)]
    procs: list[subprocess.Popen[bytes]] = []
    start = time.monotonic()
    try:
        for rank in range(nprocs):
            rank_env = dict(base)
            if nprocs > 1:
                rank_env.update(
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(port),
                    WORLD_SIZE=str(nprocs),
                    RANK=str(rank),
                    LOCAL_RANK=str(rank),
                    NODE_RANK="0",
                    PROBES_PORT_FILE=os.path.join(rdzv.name, "port"),
                    PROBES_JOB_ID=os.path.basename(rdzv.name),
                )
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(Path(script)), *args],
                    stdout=logs[rank],
                    stderr=subprocess.STDOUT,
                    env=rank_env,
                    cwd=cwd,
                    start_new_session=True,
                )
            )
        timed_out = False
        first_failure: Optional[int] = None
        failed_at = 0.0
        while True:
            codes = [p.poll() for p in procs]
            now = time.monotonic()
            if first_failure is None:
                bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
                if bad:
                    first_failure, failed_at = bad[0], now
            if all(c is not None for c in codes):
                break
            if first_failure is not None and now - failed_at >= grace:
                break
            if now - start >= timeout:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        killed = set()
        for r, p in enumerate(procs):  # kill whatever is left (nothing, after a clean finish) and reap it
            if p.poll() is None:
                _kill_session(p)
                killed.add(r)
            p.wait()
        rdzv.cleanup()
    seconds = time.monotonic() - start
    outputs = []
    for f in logs:
        f.seek(0)
        outputs.append(f.read().decode(errors="replace"))
        f.close()
    codes = [p.returncode for p in procs]
    return LaunchResult(
        returncodes=[None if r in killed else c for r, c in enumerate(codes)],
        outputs=outputs,
        seconds=seconds,
        timed_out=timed_out,
        first_failure=first_failure,
        pids=[p.pid for p in procs],
    )
