"""``probes.FrequencyProbe`` under a Lightning Trainer with gradient accumulation: the counts in its
records equal a brute-force count over the loader's batches, and the run log gets the kind."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

import probes
from probes.demos import THEMES, ByteTokenizer, TinyLM, corpus_loader


def _pairs() -> list[tuple[str, str, str]]:
    theme = THEMES[0]
    return [(s, theme.context(s), a) for s, a in list(theme.facts.items())[:4]]


def _reference_counts(loader, pairs, n_batches: int) -> list[list[int]]:
    """Per optimizer step (2 batches each), counts by plain string search over the decoded bytes:
    the keyword with a non-alphanumeric byte (or the row's edge) on both sides."""
    tok = ByteTokenizer()
    per_batch = []
    for i, batch in enumerate(loader):
        if i == n_batches:
            break
        counts = [0] * len(pairs)
        for row in batch["input_ids"].tolist():
            text = tok.decode(row)
            for j, (_, _, kw) in enumerate(pairs):
                start = text.find(kw)
                while start >= 0:
                    end = start + len(kw)
                    left = start == 0 or not text[start - 1].isalnum()
                    right = end == len(text) or not text[end].isalnum()
                    counts[j] += int(left and right)
                    start = text.find(kw, start + 1)
        per_batch.append(counts)
    return [[a + b for a, b in zip(per_batch[k], per_batch[k + 1])] for k in range(0, n_batches, 2)]


def test_lightning_counts_with_accumulation_equal_a_string_count(tmp_path) -> None:
    torch.manual_seed(0)
    pairs = _pairs()
    probe = probes.FrequencyProbe(pairs, ByteTokenizer(), model="model", layer="blocks.0")
    loader = corpus_loader(n_windows=48, batch_size=4, block_size=64)
    trainer = pl.Trainer(
        max_steps=3, accumulate_grad_batches=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[probe, probes.RunLog(tmp_path / "run")], accelerator="cpu",
    )
    trainer.fit(TinyLM(), loader)
    per_step = _reference_counts(loader, pairs, 6)
    assert [r.step for r in probe.history] == [0, 1, 2, 3]
    for r in probe.history:
        want = [sum(per_step[u][j] for u in range(r.step)) for j in range(len(pairs))]
        assert r.tensors["keyword_count"].tolist() == want
    assert sum(probe.history[-1].tensors["keyword_count"].tolist()) > 0
    assert torch.isfinite(probe.history[-1].tensors["rep_max"]).all()
    run = probes.open_run(tmp_path / "run")
    assert run.describe("frequency")["type"] == "FrequencyProbe"
