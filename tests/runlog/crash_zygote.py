"""Zygote for the SIGKILL crash test: pays the Lightning import once, then forks one training
child per request read from stdin (a JSON line), reports its pid, and reaps it after the test
kills it. Children print one JSON line per shard durably flushed (from ``RunLog.on_flush``).
With ``"fork_helper": true`` the training child forks a helper process once the log is open (as a
data-loading or monitoring process would); the helper outlives the killed writer.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import time  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from runlog_testlib import StepProbe, keyword_probe, tiny_loader, tiny_module, trainer  # noqa: E402

from probes.callbacks.run_log import RunLog  # noqa: E402


class ForkHelper(pl.Callback):
    """Forks a long-lived helper after RunLog took the directory lock (on_train_start)."""

    def on_train_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        pid = os.fork()
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        emit(event="helper", pid=pid)


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def train(cfg: dict) -> None:
    def on_flush(info) -> None:  # type: ignore[no-untyped-def]
        emit(event="flushed", seq=info.seq, n=info.n_records, step_max=info.step_max)

    log = RunLog(cfg["dir"], flush_every_n=cfg["flush_every_n"], background=cfg["background"], on_flush=on_flush)
    helper = [ForkHelper()] if cfg.get("fork_helper") else []
    trainer([keyword_probe(1), StepProbe(), log, *helper], max_steps=1_000_000).fit(tiny_module(), tiny_loader())


def main() -> None:
    emit(event="ready")
    for line in sys.stdin:
        cfg = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the training child
            try:
                train(cfg)
            finally:
                os._exit(0)
        emit(event="forked", pid=pid)
        _, status = os.waitpid(pid, 0)
        emit(event="reaped", pid=pid, signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)


if __name__ == "__main__":
    main()
