"""Standalone training script for the distributed and resume tests (never imported by pytest's process
for training: the tests launch it with :mod:`subprocess`).

It trains a one-layer TinyGPT on a synthetic dataset of fixed-width rows with every probe of the
library (KeywordProbe, PrimingProbe, FormatProbe in scored and in rollout mode) and a RunLog, on
``--devices`` CPU processes (DDP over gloo; Lightning re-launches this script for rank 1). Every
rank writes the in-memory history of every probe to ``OUT/rank{r}.json`` at teardown, and rank zero
the run log to ``OUT/log``.

The global batch of a step is the same for any number of processes: with ``--devices W`` and
``--batch B`` (per rank), step ``k`` trains on dataset rows ``k*W*B .. (k+1)*W*B - 1``. Under DDP,
Lightning's ``DistributedSampler`` (no shuffle) gives rank ``r`` the rows ``r, r + W, ...``; on one
process :class:`RankMajorBatches` yields the same rows in the same order (rank 0's, then rank 1's...).
(Lightning's own distributed sampler always shuffles training data, so :class:`RowData` builds the
``DistributedSampler`` itself and the Trainer runs with ``use_distributed_sampler=False``.)

Extras for the hang-guard and resume tests: ``--mismatch-at STEP`` makes rank 0 alone call an
all-gather at that step; ``--ckpt-every N`` saves a checkpoint every N steps; ``--kill-at STEP``
SIGKILLs the process after that many steps; ``--resume PATH`` resumes from a checkpoint.

Run: ``python tests/distributed/ddp_train.py --out /tmp/x --devices 2 --batch 4 --steps 12``
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import signal
import sys
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # on a shared 2-core machine two threads per process is ~20x slower

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.strategies import DDPStrategy  # noqa: E402
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler  # noqa: E402

from probes.callbacks import FormatProbe, KeywordProbe, PrimingProbe  # noqa: E402
from probes.callbacks.run_log import RunLog  # noqa: E402
from probes.demos import ByteTokenizer, GPTConfig, TinyGPT  # noqa: E402
from probes.formats.collapse import CollapseCriterion  # noqa: E402
from probes.formats.spec import Format, FormatSpec  # noqa: E402
from probes.priming.spec import LearningSample  # noqa: E402
from probes.testing.expectations import NoFormatCollapse, ProbeExpectations  # noqa: E402

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*litlogger.*")
warnings.filterwarnings("ignore", message=".*GPU available but not used.*")

WIDTH = 40  # bytes per row
NEWLINE = 10

SAMPLES = [
    LearningSample(
        "pearl",
        "the colour of a pearl is vermilion.",
        "vermilion",
        ["the colour of sand is", "the colour of the sky is", "a ripe lemon is"],
    ),
    LearningSample("otter", "an otter eats kelp.", "kelp", ["a rabbit eats", "the horse eats"]),
]
#: dataset rows (per epoch) holding each sample: with W=2 odd rows go to rank 1, even rows to rank 0
SAMPLE_ROWS = {"pearl": (13, 37), "otter": (22,)}

PAIRS = [
    ("eq", "3+4 ", "="),
    ("ans", "3+4 ", "ans:"),
    ("seven", "3+4 = ", "7"),
    ("pearl", "the colour of a pearl is", "vermilion"),
    ("sky", "the colour of the sky is", "vermilion"),
    ("otter", "an otter eats", "kelp"),
    ("horse", "the horse eats", "kelp"),
]  # 7 pairs: uneven shards (4 + 3) on two ranks

FORMATS = FormatSpec(
    [
        Format("equals", regex=r"\A=", prefixes=("=",)),
        Format("ans", regex=r"\Aans:", prefixes=("ans:",)),
    ]
)
PROMPTS = ["1+2 ", "3+4 ", "2+2 ", "0+3 ", "4+1 "]


def row_text(i: int) -> tuple[str, str, float]:
    """Row ``i`` of an epoch: (text, rollout completion, reward). Deterministic."""
    for name, rows in SAMPLE_ROWS.items():
        if i in rows:
            sample = next(s for s in SAMPLES if s.name == name)
            return sample.text + "\n", sample.text, 0.0
    a, b = (7 * i + 3) % 5, (11 * i + 1) % 5
    # the '=' format dominates more and more as the epoch goes on (so collapse can be detected)
    eq = (i % 10) < 6 + (i * 4) // 80
    c = a + b if (i % 7) else (a + b + 1)  # every seventh row is wrong
    completion = f"= {c}" if eq else f"ans: {c}"
    return f"{a}+{b} {completion}\n", completion, float(c == a + b)


class Rows(Dataset):
    """``n`` rows of :func:`row_text` as byte tensors padded with newlines (labels -100 on pads)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        text, completion, reward = row_text(i)
        raw = list(text.encode())[:WIDTH]
        ids = torch.full((WIDTH,), NEWLINE, dtype=torch.long)
        ids[: len(raw)] = torch.tensor(raw)
        labels = torch.full((WIDTH,), -100, dtype=torch.long)
        labels[: len(raw) - 1] = torch.tensor(raw[1:])
        mask = torch.zeros(WIDTH, dtype=torch.long)
        mask[: len(raw)] = 1
        return {
            "input_ids": ids,
            "labels": labels,
            "attention_mask": mask,
            "row": i,
            "completion": completion,
            "reward": reward,
        }


class RankMajorBatches(Sampler[list[int]]):
    """One-process batches equal to the union of W DDP ranks' batches of ``per_rank`` rows each.

    ``DistributedSampler(shuffle=False)`` gives rank ``r`` rows ``r, r + W, r + 2W, ...``, so at step
    ``k`` rank ``r`` trains on rows ``k*W*B + r + W*j`` (``j < B``). This sampler yields those rows
    for ``r = 0 .. W-1`` in that order: the same global batch, in the order DDP concatenates it.
    With ``split=True`` it yields each rank's rows as a separate micro-batch instead (for gradient
    accumulation over ``W`` micro-batches, which sums the gradients exactly as DDP's all-reduce does).
    """

    def __init__(self, n: int, per_rank: int, world: int, *, split: bool = False) -> None:
        if n % (per_rank * world):
            raise ValueError(f"Expected the dataset size {n} to be a multiple of per_rank*world={per_rank * world}.")
        self.n, self.per_rank, self.world, self.split = n, per_rank, world, split

    def __len__(self) -> int:
        steps = self.n // (self.per_rank * self.world)
        return steps * self.world if self.split else steps

    def __iter__(self) -> Iterator[list[int]]:
        g = self.per_rank * self.world
        for k in range(self.n // g):
            ranks = [[k * g + r + self.world * j for j in range(self.per_rank)] for r in range(self.world)]
            if self.split:
                yield from ranks
            else:
                yield [i for rows in ranks for i in rows]


class ParityLM(pl.LightningModule):
    """A one-layer TinyGPT trained with the LM loss; its training step also returns the row's
    completion and reward as "rollouts" (what FormatProbe reads in rollout mode)."""

    def __init__(self, optimizer: str = "sgd", lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = TinyGPT(GPTConfig(vocab_size=256, block_size=WIDTH, n_layer=1, n_head=2, n_embd=32))
        self.optimizer_name, self.lr = optimizer, lr
        self.rows: list[list[int]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        self.rows.append([int(r) for r in batch["row"]])
        logits, labels = self(batch["input_ids"]), batch["labels"]
        # mean per row, then over rows: every row weighs the same, so the mean of the ranks' losses
        # (what DDP's gradient averaging computes) equals the loss of the whole global batch
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")  # [B, T]
        loss = (nll.sum(1) / (labels != -100).sum(1).clamp_min(1)).mean()
        return {"loss": loss, "completions": list(batch["completion"]), "rewards": batch["reward"]}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class RowData(pl.LightningDataModule):
    """The training loader: a ``DistributedSampler(shuffle=False)`` per rank under DDP, else
    :class:`RankMajorBatches` matching a ``world``-rank run."""

    def __init__(self, n: int, per_rank: int, world: int, *, split: bool = False) -> None:
        super().__init__()
        self.data, self.per_rank, self.world, self.split = Rows(n), per_rank, world, split

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        assert trainer is not None
        if trainer.world_size > 1:
            sampler = DistributedSampler(
                self.data, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
            return DataLoader(self.data, batch_size=self.per_rank, sampler=sampler)
        batches = RankMajorBatches(len(self.data), self.per_rank, self.world, split=self.split)
        return DataLoader(self.data, batch_sampler=batches)


def make_probes(*, every_n_steps: int = 1) -> list[Any]:
    tok = ByteTokenizer()
    return [
        KeywordProbe(PAIRS, tok, model="model", every_n_steps=every_n_steps, log_scalars=False),
        PrimingProbe(SAMPLES, tok, model="model", every_n_steps=every_n_steps, log_scalars=False),
        FormatProbe(
            FORMATS,
            mode="scored",
            name="format_scored",
            prompts=PROMPTS,
            tokenizer=tok,
            model="model",
            every_n_steps=every_n_steps,
            # most probability mass is on neither prefix: measured against it, the set collapses to
            # "other" at once, so the agreed collapse decision of a scored probe is exercised too
            include_other=True,
            collapse=CollapseCriterion(tau=0.9, patience=2),
            log_scalars=False,
        ),
        FormatProbe(
            FORMATS,
            mode="rollout",
            name="format_rollout",
            every_n_steps=every_n_steps,
            collapse=CollapseCriterion(tau=0.75, patience=2),
            log_scalars=False,
        ),
    ]


class Dump(pl.Callback):
    """Writes every probe's history (host lists, exact) and the rows trained on to ``rank{r}.json``."""

    def __init__(self, out: Path, probes: Sequence[Any], expectations: Any = None) -> None:
        self.out, self.probes, self.expectations = out, list(probes), expectations

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        data: dict[str, Any] = {
            p.source: [{"step": r.step, **{k: v.tolist() for k, v in r.tensors.items()}} for r in p.history]
            for p in self.probes
        }
        data["__rows__"] = getattr(pl_module, "rows", [])
        data["__probe_seconds__"] = getattr(self, "probe_seconds", None)
        data["__world_size__"] = trainer.world_size
        data["__pid__"] = os.getpid()
        data["__failures__"] = self.expectations.failures if self.expectations is not None else []
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(data))
        weights = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        if any(type(v).__name__ == "DTensor" for v in weights.values()):  # FSDP2: gather the full weights
            weights = {k: v.full_tensor() if type(v).__name__ == "DTensor" else v for k, v in weights.items()}
        torch.save(weights, self.out / f"weights_rank{trainer.global_rank}.pt")


class SameJob(pl.Callback):
    """Fails fast if a rank of another job joined this process group (a port race): every rank
    all-gathers a hash of the launcher's job id and compares."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size == 1:
            return
        job = os.environ.get("PROBES_JOB_ID", "")
        token = torch.tensor([zlib.crc32(job.encode())], dtype=torch.int64)
        seen = trainer.strategy.all_gather(token).reshape(-1).tolist()
        if len(set(seen)) != 1:
            raise RuntimeError(f"ranks of different launches share one process group (job ids {seen})")


class MismatchedCollective(pl.Callback):
    """The bug the hang guard must catch: rank 0 alone calls an all-gather at one step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if trainer.global_step == self.step and trainer.global_rank == 0:
            trainer.strategy.all_gather(torch.ones(3))


class KillAt(pl.Callback):
    """SIGKILLs this process (no cleanup, no flush) once ``step`` optimizer steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step >= self.step:
            trainer.strategy.barrier()  # every rank is here: none dies inside a collective of another
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class ShardedParityLM(ParityLM):
    """:class:`ParityLM` sharded with FSDP2 (``fully_shard``) under Lightning's ModelParallelStrategy.

    ``wrap="inner"`` shards each block and the language model (what probes call); ``wrap="root"``
    shards only the LightningModule, an ancestor of the probed model, whose parameters the probe
    must all-gather itself (:func:`probes.core.reader.fsdp2_ancestors`).
    """

    def __init__(self, optimizer: str = "sgd", lr: float = 0.05, *, wrap: str = "inner") -> None:
        super().__init__(optimizer, lr)
        self.wrap = wrap

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        if self.wrap == "inner":
            for block in self.model.blocks:
                fully_shard(block, mesh=mesh)
            fully_shard(self.model, mesh=mesh)
        else:
            fully_shard(self, mesh=mesh)


def build_trainer(args: argparse.Namespace, callbacks: list[Any], *, accumulate: int = 1) -> pl.Trainer:
    strategy: Any = "auto"
    timeout = timedelta(seconds=args.dist_timeout)
    if args.devices > 1 and args.strategy == "ddp":
        strategy = DDPStrategy(process_group_backend="gloo", timeout=timeout)
    elif args.devices > 1:
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = ModelParallelStrategy(
            data_parallel_size=args.devices, tensor_parallel_size=1, process_group_backend="gloo", timeout=timeout
        )
    return pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=strategy,
        max_steps=args.steps,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=args.ckpt_every > 0,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        use_distributed_sampler=False,
        callbacks=callbacks,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument(
        "--strategy", choices=("ddp", "fsdp2-inner", "fsdp2-root"), default="ddp", help="with --devices > 1"
    )
    parser.add_argument("--batch", type=int, default=4, help="rows per rank per step")
    parser.add_argument("--global-world", type=int, default=None, help="on one process: the world size to match")
    parser.add_argument(
        "--accumulate", action="store_true", help="on one process: one micro-batch per matched rank, accumulated"
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--epoch-steps", type=int, default=10, help="optimizer steps per epoch")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--every-n-steps", type=int, default=1)
    parser.add_argument("--no-probes", action="store_true", help="train without any probe (a control)")
    parser.add_argument("--flush-every-n", type=int, default=1024)
    parser.add_argument("--dist-timeout", type=float, default=120.0, help="torch.distributed timeout (seconds)")
    parser.add_argument("--mismatch-at", type=int, default=-1)
    parser.add_argument("--ckpt-every", type=int, default=0)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--resume", type=str, default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    world = args.global_world or args.devices
    per_step = args.batch * world
    if args.accumulate and args.devices > 1:
        parser.error("--accumulate emulates a multi-process run on one process; use it with --devices 1")
    data = RowData(args.epoch_steps * per_step, args.batch, world, split=args.accumulate)

    probes = [] if args.no_probes else make_probes(every_n_steps=args.every_n_steps)
    callbacks: list[Any] = [SameJob(), *probes]
    callbacks.append(RunLog(args.out / "log", flush_every_n=args.flush_every_n, background=False))
    expectations = None
    if probes:  # decided on every rank with reduce_boolean_decision after every batch
        expectations = ProbeExpectations(
            [NoFormatCollapse(min_entropy_bits=None, max_dominant_share=0.8)], action="warn", source="format_rollout"
        )
        callbacks.append(expectations)
    callbacks.append(Dump(args.out, probes, expectations))
    if args.mismatch_at >= 0:
        callbacks.append(MismatchedCollective(args.mismatch_at))
    if args.ckpt_every > 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=args.out / "ckpt",
                every_n_train_steps=args.ckpt_every,
                save_top_k=-1,
                filename="step{step}",
                auto_insert_metric_name=False,
            )
        )
    if args.kill_at >= 0:
        callbacks.append(KillAt(args.kill_at))
    if args.devices > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from launch import rendezvous  # the port, agreed just before rank 0 binds it

        rendezvous()
    trainer = build_trainer(args, callbacks, accumulate=world if args.accumulate else 1)
    t0 = time.perf_counter()
    if args.strategy.startswith("fsdp2"):
        module: ParityLM = ShardedParityLM(args.optimizer, args.lr, wrap=args.strategy.removeprefix("fsdp2-"))
    else:
        module = ParityLM(args.optimizer, args.lr)
    trainer.fit(module, datamodule=data, ckpt_path=args.resume)
    if trainer.is_global_zero:
        print(json.dumps({"event": "done", "seconds": time.perf_counter() - t0, "global_step": trainer.global_step}))


if __name__ == "__main__":
    main()
