"""Builders shared by the run-log tests: a deterministic probe, tiny trainers, synthetic logs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import numpy as np
import torch

from probes import KeywordProbe
from probes.core.records import Record
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.integrations.lightning import ProbeCallback
from probes.runlog import RunWriter

TINY = GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48)


def step_values(step: int, tag: int = 0) -> dict[str, torch.Tensor]:
    """What StepProbe records at ``step``: exact functions of the step (and a session tag)."""
    return {
        "value": torch.tensor([step, step * 0.5, math.sqrt(step)], dtype=torch.float64),
        "half": torch.tensor(step / 3.0, dtype=torch.float32).to(torch.bfloat16),
        "even": torch.tensor(step % 2 == 0),
        "tag": torch.tensor(tag, dtype=torch.int64),
    }


class StepProbe(ProbeCallback):
    """Records :func:`step_values` before every optimizer step and when training ends."""

    def __init__(self, name: str = "step", tag: int = 0) -> None:
        super().__init__(name)
        self.tag = tag
        self._last = -1

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tag": self.tag}

    def _read(self, trainer: pl.Trainer) -> None:
        self._last = trainer.global_step
        self.emit(trainer.global_step, step_values(trainer.global_step, self.tag), epoch=trainer.current_epoch)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # type: ignore[no-untyped-def]
        if trainer.global_step != self._last:
            self._read(trainer)

    def on_train_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        if trainer.global_step != self._last:
            self._read(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"last": self._last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last = int(state_dict["last"])


def keyword_probe(n_per_theme: int = 2, **kwargs: Any) -> KeywordProbe:
    pairs = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES for s, a in list(t.facts.items())[:n_per_theme]]
    return KeywordProbe(pairs, ByteTokenizer(), model="model", **kwargs)


def tiny_module(seed: int = 0, **kwargs: Any) -> TinyLM:
    pl.seed_everything(seed, verbose=False)
    return TinyLM(TINY, **kwargs)


def tiny_loader(seed: int = 0) -> Any:
    return corpus_loader(n_windows=256, batch_size=4, block_size=32, seed=seed)


def trainer(
    callbacks: list[Any], *, max_steps: int, checkpoint_dir: Optional[Path] = None, **kwargs: Any
) -> pl.Trainer:
    extra: list[Any] = []
    if checkpoint_dir is not None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        extra.append(
            ModelCheckpoint(dirpath=checkpoint_dir, every_n_train_steps=5, save_top_k=-1, filename="{step}")
        )
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks + extra,
        **kwargs,
    )


def history_array(probe: ProbeCallback, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of ``name`` from a probe's in-memory history (the independent reference)."""
    steps = np.array([r.step for r in probe.history], dtype=np.int64)
    values = torch.stack([r.tensors[name].detach().cpu() for r in probe.history])
    if values.dtype == torch.bfloat16:
        values = values.float()
    return steps, values.numpy()


def write_synthetic(path: Path, *, steps: int = 30, flush_every_n: int = 8, collapse_at: int = 18) -> dict[str, Any]:
    """A log with keyword, priming and format sources following docs/records.md, values known.

    Returns the reference arrays, keyed like the log's metric names.
    """
    rng = np.random.default_rng(0)
    pairs = [{"name": f"pair{i}", "context": f"ctx {i}", "keyword": f"kw{i}", "group": "g"} for i in range(4)]
    samples = [{"name": f"sample{i}"} for i in range(5)]
    formats = ["boxed", "answer_is", "json"]
    p_before = np.array([1e-6, 1e-4, 2e-3, 5e-2, 3e-1])
    ref: dict[str, list[np.ndarray]] = {}
    with RunWriter(path, flush_every_n=flush_every_n) as w:
        w.register_source("keyword", {"type": "KeywordProbe", "source": "keyword", "probe_set": {"pairs": pairs}})
        w.register_source(
            "priming", {"type": "PrimingProbe", "source": "priming", "samples": samples, "threshold": 1e-3}
        )
        w.register_source("format", {"type": "FormatProbe", "source": "format", "formats": formats})
        for s in range(steps):
            logp = np.log(np.linspace(0.001, 0.1, 4)) + 0.05 * s + rng.normal(0, 0.01, 4)
            kw = {
                "p_first": np.exp(logp).astype(np.float32),
                "logp_first": logp.astype(np.float32),
                "logp_seq": (logp * 1.5).astype(np.float32),
                "rank": np.arange(1, 5, dtype=np.int64) + s,
            }
            has = s >= 2
            s_prime = p_before * (10.0 ** (-np.log10(p_before) * 0.3)) * (1 + 0.01 * s)
            pr = {
                "p_learn": np.minimum(1.0, p_before * (1 + s)),
                "p_before": p_before if has else np.full(5, np.nan),
                "s_prime": s_prime,
                "log10_s_prime": np.log10(s_prime),
                "exposures": np.full(5, s // 3, dtype=np.int64),
                "surprising": (p_before < 1e-3) if has else np.zeros(5, dtype=bool),
                "has_baseline": np.full(5, has),
            }
            share = min(0.97, 0.34 + 0.04 * s)
            dist = np.array([share, (1 - share) * 0.5, (1 - share) * 0.3, (1 - share) * 0.2])
            ent = float(-(dist * np.log(dist)).sum())
            fm = {
                "dist": dist,
                "entropy_nats": np.float64(ent),
                "entropy_bits": np.float64(ent / math.log(2)),
                "dominant": np.int64(int(np.argmax(dist))),
                "dominant_share": np.float64(dist.max()),
                "collapsed": np.bool_(s >= collapse_at),
                "n": np.int64(64),
            }
            for src, vals in (("keyword", kw), ("priming", pr), ("format", fm)):
                w.write(Record(s, src, {k: torch.as_tensor(np.asarray(v)) for k, v in vals.items()}))
                for k, v in vals.items():
                    ref.setdefault(f"{src}/{k}", []).append(np.asarray(v))
    return {k: np.stack(v) for k, v in ref.items()} | {"formats": formats, "p_before": p_before}
