"""Small real run logs for the CLI tests: a tiny LM trained a few steps under ``ProbeLoop`` with a
keyword, a priming and a scored format probe (no Lightning Trainer needed)."""

from __future__ import annotations

from pathlib import Path

import torch
from tests.helpers import fact_pairs

from probes import FormatProbe, KeywordProbe, LearningSample, PrimingProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.demos.lm import lm_loss
from probes.formats import Format, FormatSpec
from probes.integrations.loop import ProbeLoop

CONTEXTS = ["the colour of the sky is", "the colour of sand is"]


def make_run(path: Path, *, seed: int, lr: float = 1e-2, steps: int = 4) -> Path:
    """Train a one-layer TinyLM ``steps`` steps, writing a run log to ``path``."""
    tok = ByteTokenizer()
    torch.manual_seed(seed)
    module = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48), lr=lr)
    optimizer = module.configure_optimizers()
    the, b = Format("the", regex=r"\A the", prefixes=(" the",)), Format("b", regex=r"\A b", prefixes=(" b",))
    fact = LearningSample("coal", "the colour of coal is black", "black", CONTEXTS)
    probes = [
        KeywordProbe(fact_pairs(2), tok, model="model"),
        PrimingProbe([fact], tok, model="model", baseline=0),
        FormatProbe(FormatSpec([the, b]), mode="scored", prompts=CONTEXTS, tokenizer=tok, model="model", collapse=None),
    ]
    with ProbeLoop(probes, module, run_log=path) as loop:
        for batch in corpus_loader(n_windows=4 * steps, batch_size=4, block_size=32):
            loop.observe_batch(batch)
            lm_loss(module(batch["input_ids"]), batch["labels"]).backward()
            loop.optimizer_step(optimizer)
            optimizer.zero_grad()
    return path
