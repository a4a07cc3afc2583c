"""Run log vs TensorBoard vs Lightning's CSVLogger: write and read the same 10,000 steps x 64 scalars.

Each logger gets its natural input, prepared before the clock starts: one 0-d tensor per metric
(what probes emit) for the run log, Python floats for TensorBoard's ``add_scalar`` and dicts of
floats for ``CSVLogger.log_metrics``. Write time runs from opening the writer to closing it (all
data durably written: the run log fsyncs every shard), divided by the steps. Read time runs from
opening the files to having every metric as arrays (TensorBoard: ``EventAccumulator`` with
``size_guidance={'scalars': 0}``, i.e. no sampling). Every reader's output is checked against the
data. The run log uses its defaults (a shard per 4,096 records or 30 s, synchronous writes).

Targets: reading >= 500x faster than TensorBoard, writing >= 50x cheaper per step.

Run: ``python benchmarks/bench_runlog.py [--quick] [--repeats N]``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

N_STEPS, N_METRICS = 10_000, 64
QUICK_STEPS = 1_000
READ_TARGET, WRITE_TARGET = 500.0, 50.0

RATIOS = [
    ("write_ratio_vs_tensorboard", "TensorBoard write per step / run log write per step", ">= 50"),
    ("read_ratio_vs_tensorboard", "TensorBoard full read / run log full read", ">= 500"),
    ("write_ratio_vs_csvlogger", "CSVLogger write per step / run log write per step", "info"),
    ("read_ratio_vs_csvlogger", "CSVLogger full read / run log full read", "info"),
]


def make_data(n_steps: int, n_metrics: int = N_METRICS, seed: int = 0) -> np.ndarray:
    """float32 ``[n_steps, n_metrics]`` random walks."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0, 0.1, (n_steps, n_metrics)), axis=0).astype(np.float32)


def metric_names(n: int = N_METRICS) -> list[str]:
    return [f"m{i:02d}" for i in range(n)]


# ---------------------------------------------------------------------------------------- run log
def runlog_write(path: Path, data: np.ndarray) -> float:
    from probes.core.records import Record
    from probes.runlog import RunWriter

    names = metric_names(data.shape[1])
    rows = [dict(zip(names, row.unbind(0))) for row in torch.from_numpy(data)]
    t0 = time.perf_counter()
    writer = RunWriter(path)
    for step, tensors in enumerate(rows):
        writer.write(Record(step, "bench", tensors))
    writer.close()
    return time.perf_counter() - t0


def runlog_read(path: Path, names: list[str]) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    from probes.runlog import open_run

    t0 = time.perf_counter()
    run = open_run(path)
    out = {n: run.read(f"bench/{n}") for n in names}
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------------------------------- tensorboard
def tensorboard_write(path: Path, data: np.ndarray) -> float:
    from torch.utils.tensorboard import SummaryWriter

    names = metric_names(data.shape[1])
    rows = data.tolist()
    t0 = time.perf_counter()
    writer = SummaryWriter(str(path))
    for step, row in enumerate(rows):
        for name, value in zip(names, row):
            writer.add_scalar(name, value, step)
    writer.close()
    return time.perf_counter() - t0


def tensorboard_read(path: Path, names: list[str]) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t0 = time.perf_counter()
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for n in names:
        events = acc.Scalars(n)
        out[n] = (np.array([e.step for e in events]), np.array([e.value for e in events], dtype=np.float32))
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------------------------------- CSVLogger
def csv_write(path: Path, data: np.ndarray) -> float:
    from lightning.pytorch.loggers import CSVLogger

    names = metric_names(data.shape[1])
    rows = [dict(zip(names, row)) for row in data.tolist()]
    t0 = time.perf_counter()
    logger = CSVLogger(str(path), name="bench", version=0)
    for step, metrics in enumerate(rows):
        logger.log_metrics(metrics, step)
    logger.finalize("success")
    return time.perf_counter() - t0


def csv_read(path: Path, names: list[str]) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    file = path / "bench" / "version_0" / "metrics.csv"
    t0 = time.perf_counter()
    with open(file, newline="") as f:
        header = next(csv.reader(f))
    table = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    col = {h: i for i, h in enumerate(header)}
    steps = table[:, col["step"]].astype(np.int64)
    out = {n: (steps, table[:, col[n]].astype(np.float32)) for n in names}
    return time.perf_counter() - t0, out


LOGGERS: dict[str, tuple[Callable[[Path, np.ndarray], float], Callable[..., Any]]] = {
    "runlog": (runlog_write, runlog_read),
    "tensorboard": (tensorboard_write, tensorboard_read),
    "csvlogger": (csv_write, csv_read),
}


def check(name: str, got: dict[str, tuple[np.ndarray, np.ndarray]], data: np.ndarray) -> None:
    for j, metric in enumerate(metric_names(data.shape[1])):
        steps, values = got[metric]
        if not (np.array_equal(steps, np.arange(len(data))) and np.array_equal(values, data[:, j])):
            raise AssertionError(f"{name} read back different values for {metric}")


def run(quick: bool = False, repeats: int = 1) -> dict[str, Any]:
    """Measure all three loggers; returns per-step write cost, read time and the ratios.

    Args:
        quick: 1,000 steps instead of 10,000 (ratios are then indicative only).
        repeats: measurements per logger; the median is reported.
    """
    n_steps = QUICK_STEPS if quick else N_STEPS
    data = make_data(n_steps)
    names = metric_names()
    result: dict[str, Any] = {"steps": n_steps, "metrics": N_METRICS, "repeats": repeats}
    for name, (write, read) in LOGGERS.items():
        writes, reads = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
                writes.append(write(Path(tmp) / name, data))
                seconds, got = read(Path(tmp) / name, names)
                reads.append(seconds)
                check(name, got, data)
        result[f"{name}_write_us_per_step"] = statistics.median(writes) / n_steps * 1e6
        result[f"{name}_read_s"] = statistics.median(reads)
    for other in ("tensorboard", "csvlogger"):
        result[f"write_ratio_vs_{other}"] = result[f"{other}_write_us_per_step"] / result["runlog_write_us_per_step"]
        result[f"read_ratio_vs_{other}"] = result[f"{other}_read_s"] / result["runlog_read_s"]
    result["targets_met"] = (
        result["read_ratio_vs_tensorboard"] >= READ_TARGET and result["write_ratio_vs_tensorboard"] >= WRITE_TARGET
    )
    return result


def report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['steps']:,} steps x {r['metrics']} scalar metrics (median of {r['repeats']})",
        f"{'logger':<12} {'write / step':>14} {'full read':>12}",
    ]
    for name in LOGGERS:
        lines.append(f"{name:<12} {r[name + '_write_us_per_step']:>11.1f} us {r[name + '_read_s'] * 1e3:>9.1f} ms")
    lines += [
        f"run log vs TensorBoard: writing {r['write_ratio_vs_tensorboard']:.0f}x cheaper per step"
        f" (target >= {WRITE_TARGET:.0f}x), reading {r['read_ratio_vs_tensorboard']:.0f}x faster"
        f" (target >= {READ_TARGET:.0f}x)",
        f"run log vs CSVLogger:   writing {r['write_ratio_vs_csvlogger']:.1f}x cheaper per step,"
        f" reading {r['read_ratio_vs_csvlogger']:.1f}x faster",
        f"targets met: {'yes' if r['targets_met'] else 'NO'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS:,} steps instead of {N_STEPS:,}")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per logger (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(report(run(quick=args.quick, repeats=args.repeats)))


if __name__ == "__main__":
    main()
