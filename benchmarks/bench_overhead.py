"""What a KeywordProbe costs a training run: step time and peak memory, with and without it.

The model is the GPT-2-shaped one of ``bench_engine`` (4 layers, width 256, vocabulary 5,000), trained
with AdamW on random batches of 16 x 128 tokens through :class:`probes.ProbeLoop`. Probe sets of 64,
256 and 1,024 pairs (contexts of 24 tokens, 8 keywords of 2-4 tokens each per context), read every
step and every 10 steps.

* **Time**: blocks of 10 training steps, each configuration (no probe, and every set and interval)
  run in turn on the same model, the order alternating between rounds; the ratio is the median
  block time with the probe over the median block time without it. torch is pinned to one thread.
* **Peak memory**: each configuration in a fresh subprocess that trains 12 steps and reports its
  peak resident set size (``VmHWM``); the probe's share is the difference to the run without.
  On a GPU the same subprocesses would report ``torch.cuda.max_memory_allocated``.

Run: ``python benchmarks/bench_overhead.py [--quick]`` (the quick form skips 1,024 pairs every step's
memory subprocess and runs fewer rounds).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

VOCAB = 5000
BATCH, SEQ = 16, 128
BLOCK = 10  # steps per timed block: one reading per block at every_n_steps=10
SIZES = (64, 256, 1024)
INTERVALS = (1, 10)

RATIOS = [
    ("pairs64_every1_vs_bare", "GPT-2 shape, 64 pairs read every step: training step with / without", "-"),
    ("pairs256_every1_vs_bare", "GPT-2 shape, 256 pairs read every step: training step with / without", "<= 1.6"),
    ("pairs1024_every1_vs_bare", "GPT-2 shape, 1024 pairs read every step: training step with / without", "-"),
    ("pairs256_every10_vs_bare", "GPT-2 shape, 256 pairs every 10 steps: training step with / without", "-"),
    ("pairs1024_every10_vs_bare", "GPT-2 shape, 1024 pairs every 10 steps: training step with / without", "-"),
]


def _model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=VOCAB, n_positions=256)
    return GPT2LMHeadModel(config)


def _pairs(n: int, seed: int = 0) -> list[tuple[str, list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(n // 8):
        context = torch.randint(1, VOCAB, (24,), generator=g).tolist()
        for k in range(8):
            width = int(torch.randint(2, 5, (1,), generator=g))
            out.append((f"c{c}k{k}", context, torch.randint(1, VOCAB, (width,), generator=g).tolist()))
    return out


class _Trainer:
    """One model and optimizer; ``block(loop)`` trains ``BLOCK`` steps through a ProbeLoop (or none)."""

    def __init__(self) -> None:
        self.model = _model().train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.g = torch.Generator().manual_seed(1)

    def step(self, loop: Any) -> None:
        ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=self.g)
        loss = self.model(ids, labels=ids).loss
        loss.backward()
        if loop is None:
            self.optimizer.step()
        else:
            loop.optimizer_step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)

    def block(self, loop: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            self.step(loop)
        return time.perf_counter() - t0


def _loop(trainer: _Trainer, n_pairs: int, every: int) -> Any:
    from probes import KeywordProbe, ProbeLoop

    probe = KeywordProbe(_pairs(n_pairs), every_n_steps=every, log_scalars=False)
    loop = ProbeLoop([probe], trainer.model)
    loop.start()
    return loop


def _configs(quick: bool) -> list[tuple[int, int]]:
    return [(n, e) for n in SIZES for e in INTERVALS]


def time_overhead(quick: bool) -> dict[str, float]:
    trainer = _Trainer()
    loops: dict[str, Any] = {"bare": None}
    for n, e in _configs(quick):
        loops[f"pairs{n}_every{e}"] = _loop(trainer, n, e)
    times: dict[str, list[float]] = {k: [] for k in loops}
    for loop in loops.values():  # warm-up: one block each (allocator, first readings)
        trainer.block(loop)
    rounds = 3 if quick else 7
    for r in range(rounds):
        order = list(loops) if r % 2 == 0 else list(reversed(loops))
        for name in order:
            times[name].append(trainer.block(loops[name]))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"threads": float(torch.get_num_threads()), "bare_step_ms": med["bare"] / BLOCK * 1e3}
    for name in loops:
        if name == "bare":
            continue
        out[f"{name}_step_ms"] = med[name] / BLOCK * 1e3
        out[f"{name}_vs_bare"] = med[name] / med["bare"]
    return out


def _peak_child(n_pairs: int, every: int, steps: int = 12) -> None:
    """In a subprocess: train ``steps`` steps with (or, for ``n_pairs == 0``, without) the probe and
    print the peak resident set size in MiB."""
    torch.set_num_threads(1)
    trainer = _Trainer()
    loop = _loop(trainer, n_pairs, every) if n_pairs else None
    for _ in range(steps):
        trainer.step(loop)
    print(json.dumps({"peak_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's peak resident set size: ``VmHWM`` (it starts afresh at ``exec``; ``ru_maxrss``
    keeps the forking parent's peak, which made every child report the parent's size)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    configs: list[tuple[int, int]] = [(0, 1)] + [(n, 1) for n in SIZES if not (quick and n == 1024)]
    for n, e in configs:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--peak-child", str(n), str(e)],
            capture_output=True, text=True, check=True, timeout=900,
        )
        peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]
        out["bare_peak_mib" if n == 0 else f"pairs{n}_peak_mib"] = peak
    for n in SIZES:
        if f"pairs{n}_peak_mib" in out:
            out[f"pairs{n}_peak_extra_mib"] = out[f"pairs{n}_peak_mib"] - out["bare_peak_mib"]
    return out


def runlog_size(quick: bool) -> dict[str, float]:
    """Bytes on disk per pair per reading of a KeywordProbe's run log (1,024 pairs, a small tiny GPT
    with the same vocabulary), a shard per reading and a shard per 100 readings, and how many times
    the probe's description is stored (once per timeline: its JSON is over the inline limit)."""
    import tempfile

    from probes import KeywordProbe, ProbeLoop
    from probes.demos import GPTConfig, TinyGPT
    from probes.runlog import RunWriter

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=1, n_embd=32, n_head=2))
    readings = 20 if quick else 100
    pairs = _pairs(1024)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flush_n in (1, 100):
            writer = RunWriter(Path(tmp) / f"flush{flush_n}", flush_every_n=flush_n, flush_every_s=None)
            probe = KeywordProbe(pairs, log_scalars=False)
            loop = ProbeLoop([probe], model, sinks=[writer])
            loop.start()
            for _ in range(readings):
                loop.before_optimizer_step()
                loop.after_optimizer_step()
            writer.close("finished")
            files = [f for f in (Path(tmp) / f"flush{flush_n}").rglob("*") if f.is_file()]
            total = sum(f.stat().st_size for f in files)
            text = json.dumps(probe.describe()).encode()
            describe = len(text)
            last_pair = pairs[-1][0].encode()  # a name that appears only in the description (c127k7)
            copies = sum(f.read_bytes().count(last_pair) for f in files) / text.count(last_pair)
            out[f"flush{flush_n}_bytes_per_pair_reading"] = (total - copies * describe) / (1024 * readings)
            out[f"flush{flush_n}_describe_copies"] = copies
            out["describe_kib"] = describe / 1024
    return out


def run(quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(1)
    out = time_overhead(quick)
    out.update(peak_memory(quick))
    out.update(runlog_size(quick))
    return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 1,024-pair memory run")
    parser.add_argument("--peak-child", nargs=2, type=int, metavar=("PAIRS", "EVERY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        _peak_child(*args.peak_child)
        return
    result = run(quick=args.quick)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:10.3f}")
    for key, what, target in RATIOS:
        print(f"{what:<72} {result[key]:8.2f}  (target {target})")


if __name__ == "__main__":
    main()
