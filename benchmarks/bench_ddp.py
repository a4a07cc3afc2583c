"""KeywordProbe cost per optimizer step under DDP at 1 and 2 processes (CPU, gloo, one thread each).

Under DDP each rank scores ``ceil(N / W)`` of the N probe pairs and one all-gather joins the
slices, so the probe's compute per rank shrinks as ``1 / W`` while a small gather is added. This
benchmark trains the tiny reference LM (``TinyLM``, batch 16 x 64 tokens per rank) with a timed
KeywordProbe and measures, per configuration of probe-set size N and context length L, at W = 1
and W = 2 processes:

* ``probe_ms``: median time of the probe's ``on_before_optimizer_step`` (its sharded forward, the
  all-gather, the record), on rank 0;
* ``compute_ms``: median time of the same rank's forward over its own slice alone (no collective),
  timed right next to the hook; ``probe_ms - compute_ms`` is the gather and the wait for the slowest rank;
* ``items_per_rank``, ``tokens_per_rank``: the slice each rank scores (padded tokens per pass);
* ``step_ms``: median wall time of a whole training step (the probe included).

Each world size is one launch of this file as a worker on W processes (torchrun-style environment
variables); every configuration is a separate ``Trainer.fit`` inside the same process group.
``RATIOS`` lists the ratios ``benchmarks/run_all.py`` tabulates. :func:`project` extrapolates to 8 and
64 ranks (a projection, labelled as such; the formula is in its docstring and ``docs/scaling.md``).

Run: ``python benchmarks/bench_ddp.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATIOS = [
    ("speedup_2_vs_1", "probe time per step, 1 process / 2 processes (largest probe set)", ">= 1.3 (ideal 2)"),
    ("items_ratio_1_vs_2", "probe items per rank, 1 process / 2 processes", "= 2"),
    ("gather_share_2", "share of the 2-process probe time not spent in its own forward", "<= 0.35"),
]

QUICK = {
    "steps": 8,
    "configs": [(64, 24, "distinct"), (256, 24, "distinct"), (256, 80, "distinct"), (256, 24, "shared")],
}
FULL = {
    "steps": 16,
    "configs": [
        (64, 24, "distinct"),
        (256, 24, "distinct"),
        (1024, 24, "distinct"),
        (256, 80, "distinct"),
        (1024, 80, "distinct"),
        (1024, 24, "shared"),
    ],
}
FILLER = "as the old story goes, and as every child in the village knows, "


def probe_pairs(n: int, context_len: int, kind: str = "distinct") -> list[tuple[str, str, str]]:
    """``n`` (name, context, keyword) pairs with contexts of ``context_len`` bytes (byte tokenizer).

    ``"distinct"``: every pair has its own context and a multi-byte keyword (one forward row each).
    ``"shared"``: ``n / 8`` contexts with 8 one-letter keywords each, a cloze set: the 8 pairs of a
    context share one row.
    """
    from probes.demos import THEMES

    attributes = sorted({a for t in THEMES for a in t.facts.values()})
    themed = [t.context(s) for t in THEMES for s in t.facts]

    def context(i: int) -> str:  # a unique 6-byte tag, then filler and a themed context: context_len bytes
        return f"{i:05d} " + ((FILLER * 4) + themed[i % len(themed)])[-(context_len - 6) :]

    if kind == "shared":
        return [(f"p{i}", context(i // 8), "abcdefgh"[i % 8]) for i in range(n)]
    return [(f"p{i}", context(i), attributes[i % len(attributes)]) for i in range(n)]


# --------------------------------------------------------------------------------------- worker


def _worker(out: Path, steps: int, configs: list[tuple[int, int, str]]) -> None:
    import torch

    torch.set_num_threads(1)
    import warnings

    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DDPStrategy

    from probes import KeywordProbe
    from probes.core.isolation import isolated_eval
    from probes.demos import ByteTokenizer, TinyLM, corpus_loader

    warnings.filterwarnings("ignore")

    class TimedProbe(KeywordProbe):
        """KeywordProbe whose hook is timed; its own slice's bare forward is timed next to it."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.probe_times: list[float] = []
            self.compute_times: list[float] = []
            self.step_times: list[float] = []
            self._t0 = 0.0

        def _compute(self, pl_module: pl.LightningModule) -> float:
            plan, module = self.reader.plan, pl_module.model
            assert plan is not None
            t0 = time.perf_counter()
            with isolated_eval(module):
                plan.run(self.reader._forward, torch.device("cpu"))
            return time.perf_counter() - t0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            self.step_times.append(time.perf_counter() - self._t0 - self.compute_times[-1])

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # type: ignore[no-untyped-def]
            first = trainer.global_step % 2 == 0  # alternate the order to cancel drift
            if first:
                self.compute_times.append(self._compute(pl_module))
            t0 = time.perf_counter()
            super().on_before_optimizer_step(trainer, pl_module, optimizer)
            self.probe_times.append(time.perf_counter() - t0)
            if not first:
                self.compute_times.append(self._compute(pl_module))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    results = []
    for n, length, kind in configs:
        torch.manual_seed(0)
        probe = TimedProbe(probe_pairs(n, length, kind), ByteTokenizer(), model="model", log_scalars=False)
        strategy: Any = DDPStrategy(process_group_backend="gloo") if world > 1 else "auto"
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=world,
            strategy=strategy,
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[probe],
        )
        trainer.fit(TinyLM(), corpus_loader(n_windows=16 * steps * world, batch_size=16, block_size=64))
        warm = 2
        plan = probe.reader.plan
        assert plan is not None
        results.append(
            {
                "pairs": n,
                "context_len": length,
                "kind": kind,
                "world": world,
                "items_per_rank": len(plan.items),
                "tokens_per_rank": plan.n_forward_tokens,
                "probe_ms": statistics.median(probe.probe_times[warm:]) * 1e3,
                "compute_ms": statistics.median(probe.compute_times[warm:]) * 1e3,
                "step_ms": statistics.median(probe.step_times[warm:]) * 1e3,
            }
        )
    # the collective alone: the all-gather a reading performs, [W, 3, items per rank] float64
    import torch.distributed as dist

    for row in results:
        row["allgather_ms"] = 0.0
        if world > 1 and dist.is_available() and dist.is_initialized():
            t = torch.zeros(3, row["items_per_rank"], dtype=torch.float64)
            parts = [torch.empty_like(t) for _ in range(world)]
            times = []
            for _ in range(30):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_gather(parts, t)
                times.append(time.perf_counter() - t0)
            row["allgather_ms"] = statistics.median(times[5:]) * 1e3
    if rank == 0:
        out.write_text(json.dumps(results))


# --------------------------------------------------------------------------------------- parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(
    world: int, steps: int, configs: list[tuple[int, int, str]], timeout: float = 900.0
) -> list[dict[str, Any]]:
    """Run the worker on ``world`` processes (all started at once); kill them all on a timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        cmd = [sys.executable, __file__, "--worker", str(out), "--steps", str(steps), "--configs", json.dumps(configs)]
        procs = []
        for r in range(world):
            rank_env = dict(env, WORLD_SIZE=str(world), RANK=str(r), LOCAL_RANK=str(r), NODE_RANK="0")
            if world == 1:
                rank_env = {k: v for k, v in rank_env.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
            log = open(Path(tmp) / f"rank{r}.log", "wb")  # closed below
            procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=rank_env), log))
        deadline = time.monotonic() + timeout
        try:
            while any(p.poll() is None for p, _ in procs):
                if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p, _ in procs):
                    break
                time.sleep(0.1)
        finally:
            for p, log in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
                log.close()
        codes = [p.returncode for p, _ in procs]
        if codes != [0] * world:
            tail = (Path(tmp) / "rank0.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bench_ddp worker on {world} processes failed (exit codes {codes}):\n{tail}")
        return json.loads(out.read_text())


def project(one: dict[str, Any], two: dict[str, Any], world: int) -> dict[str, float]:
    """PROJECTION (not a measurement) of the probe's cost at ``world`` DDP ranks from the 1- and
    2-process figures of one configuration (N pairs):

    ``T(W) = C1 * ceil(N / W) / N + A * log2(W)``

    ``C1`` is the forward over all N items on one process; each rank scores ``ceil(N / W)`` of them
    (token-balanced). ``A`` is the measured all-gather of the 2-process run (``[2, 3, N / 2]`` float64
    over gloo on loopback), scaled by the ``log2(W)`` rounds of a recursive-doubling all-gather. The
    wait for the slowest rank (measured at 2 processes, mostly other jobs sharing this machine's two
    cores) is not projected. ``share`` is ``T(W) / (S + T(W))`` with ``S`` the per-rank training work
    at one process; DDP keeps the per-rank batch, so ``S`` does not change with W. The probe and the
    training run on the same hardware, so the share carries over to GPUs to first order; the
    milliseconds do not.

    Returns:
        ``{"probe_ms": T(W), "share": ..., "unsharded_share": C1 / (S + C1)}``; the last is what every
        rank pays when the probe set is not sharded (FSDP2 and other sharded-parameter strategies).
    """
    n = one["pairs"]
    c1 = one["compute_ms"]
    train = one["step_ms"] - one["probe_ms"]
    t = c1 * (-(-n // world)) / n + two["allgather_ms"] * math.log2(world)
    return {"probe_ms": t, "share": t / (train + t), "unsharded_share": c1 / (train + c1)}


def run(quick: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    configs = [tuple(c) for c in plan["configs"]]
    per_world = {w: _launch(w, plan["steps"], configs) for w in (1, 2)}  # type: ignore[arg-type]
    result: dict[str, Any] = {"steps": plan["steps"], "rows": per_world[1] + per_world[2]}
    by = {(r["pairs"], r["context_len"], r["kind"], r["world"]): r for r in result["rows"]}
    n_max = max(n for n, _, kind in configs if kind == "distinct")
    length = min(length for n, length, kind in configs if n == n_max and kind == "distinct")
    one, two = by[(n_max, length, "distinct", 1)], by[(n_max, length, "distinct", 2)]
    result["speedup_2_vs_1"] = one["probe_ms"] / two["probe_ms"]
    result["items_ratio_1_vs_2"] = one["items_per_rank"] / two["items_per_rank"]
    result["gather_share_2"] = max(two["probe_ms"] - two["compute_ms"], 0.0) / two["probe_ms"]
    result["allgather_ms_2"] = two["allgather_ms"]
    result["wait_ms_2"] = max(two["probe_ms"] - two["compute_ms"] - two["allgather_ms"], 0.0)
    result["reference"] = {"pairs": n_max, "context_len": length}
    for w in (1, 2):
        row = by[(n_max, length, "distinct", w)]
        result[f"probe_share_{w}"] = row["probe_ms"] / row["step_ms"]  # measured
    for w in (8, 64):
        for key, value in project(one, two, w).items():
            result[f"projection_{key}_{w}"] = value
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and steps (CI smoke)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--configs", type=str, default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker, args.steps, [tuple(c) for c in json.loads(args.configs)])
        return
    r = run(quick=args.quick)
    print("KeywordProbe under DDP, tiny LM, CPU (gloo), one thread per process")
    print(
        f"{'pairs':>6} {'ctx':>4} {'kind':>8} {'W':>2} {'items/rank':>10} {'tokens/rank':>11} {'probe ms':>9}"
        f" {'own fwd ms':>10} {'gather ms':>9} {'step ms':>8}"
    )
    for row in sorted(r["rows"], key=lambda x: (x["kind"], x["context_len"], x["pairs"], x["world"])):
        print(
            f"{row['pairs']:>6} {row['context_len']:>4} {row['kind']:>8} {row['world']:>2} {row['items_per_rank']:>10}"
            f" {row['tokens_per_rank']:>11} {row['probe_ms']:>9.2f} {row['compute_ms']:>10.2f}"
            f" {row['allgather_ms']:>9.3f} {row['step_ms']:>8.1f}"
        )
    ref = r["reference"]
    print(f"\n{ref['pairs']} pairs, context {ref['context_len']}:")
    for key, what, target in RATIOS:
        print(f"  {what:<66} {r[key]:7.2f}   (target {target})")
    print(f"  measured: the all-gather alone at 2 processes (ms)                     {r['allgather_ms_2']:7.3f}")
    print(f"  measured: waiting for the slower rank at 2 processes (ms)               {r['wait_ms_2']:7.2f}")
    for w in (1, 2):
        print(f"  measured: probe share of the training step at {w} process(es)       {r[f'probe_share_{w}']:7.2f}")
    for w in (8, 64):
        print(
            f"  PROJECTION at {w} ranks: {r[f'projection_probe_ms_{w}']:.1f} ms per step on this CPU, share"
            f" {r[f'projection_share_{w}']:.3f} (unsharded: {r[f'projection_unsharded_share_{w}']:.2f});"
            " formula in docs/scaling.md"
        )


if __name__ == "__main__":
    main()
