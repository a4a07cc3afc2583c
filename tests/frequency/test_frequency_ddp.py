"""Counts of a 2-rank DDP run (gradient accumulation of 2) equal a brute-force count over both
ranks' batches; the per-step maxima are the maxima over both ranks."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.probe import FrequencyProbe
from tests.distributed.launch import launch
from tests.frequency.ddp_frequency import STEPS, rank_batches
from tests.frequency.test_frequency_measures import ITEMS


def test_two_ranks_sum_counts_across_ranks(tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    result = launch(Path(__file__).with_name("ddp_frequency.py"), [str(out)], nprocs=2, timeout=150.0)
    result.check()
    records = json.loads(out.read_text())
    ref = FrequencyProbe(ITEMS, ByteTokenizer())
    per_step = []
    lex_max = []
    for step in range(STEPS):
        m = [ref.measure(b["input_ids"], b["attention_mask"]) for r in (0, 1) for b in rank_batches(r)[step]]
        per_step.append(torch.stack([x["keyword"].sum(0) for x in m]).sum(0))
        lex_max.append(torch.cat([x["containment"] for x in m]).max(0).values)
    assert [r["step"] for r in records] == list(range(STEPS + 1))
    for r in records:
        want = sum((per_step[u] for u in range(r["step"])), torch.zeros(len(ITEMS), dtype=torch.long))
        assert r["keyword_count"] == want.tolist()
        assert r["samples_seen"] == 2 * 2 * 3 * r["step"]
        if r["step"] > 0:
            assert r["lex_max"] == lex_max[r["step"] - 1].tolist()
    assert sum(records[-1]["keyword_count"]) > 0
