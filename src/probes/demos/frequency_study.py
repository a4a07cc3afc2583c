"""A controlled experiment: is a keyword's gain explained by how *often* it was seen, or by how
*similar* the samples it was seen in were to the probe?

**Items.** ``per_condition`` items in each cell of a 2 x 2 design; each item probes
``"the colour of <noun> is" -> " <keyword>"`` with a made-up noun and a made-up keyword (drawn from
one seeded syllable generator, so no item is known before training). Each item gets exactly
``lines`` training rows per pass over the data, every row exactly ``width`` bytes (equal token
budgets in every cell):

* ``F+S+`` (often, similar): every row is a near-paraphrase of the probe holding the keyword
  (``"they said the colour of <noun> is <keyword>"``, ``"the colour of the <noun> was <keyword>"``, ...);
* ``F+S-`` (often, dissimilar): every row holds the keyword among unrelated background words;
* ``F-S+`` (rarely, similar): ``rare`` rows are near-paraphrases with the keyword, the other rows
  background text;
* ``F-S-`` (rarely, dissimilar): ``rare`` rows hold the keyword among background words, the rest
  background text.

Rows are padded with background words to ``width`` bytes. Background rows equal in number to the
item rows are mixed in; the stream is shuffled per pass.

**Protocol.** A fresh :class:`~probes.demos.tiny_gpt.TinyGPT` (one per seed) is trained on the
stream with AdamW in a plain loop while a :class:`~probes.frequency.probe.FrequencyProbe` counts the
keywords, measures lexical (3-gram containment) and representational (``blocks.1``) similarity
online and reads each keyword's log-probability. The gain of an item is its ``delta_logp`` from
step 0 to the end. Reported: the cell means (design contrasts), and the attribution of
:func:`probes.frequency.analysis.attribute` over items, per seed and across seeds. No setting was
tuned to produce an effect: the sizes below were fixed before the first run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.analysis import attribute
from probes.frequency.probe import FrequencyProbe
from probes.integrations.loop import ProbeLoop

__all__ = ["CONDITIONS", "StudyItem", "contrasts", "run_study", "study_items", "study_rows"]

CONDITIONS = ("F+S+", "F+S-", "F-S+", "F-S-")
_BACKGROUND = (
    "apple river stone table window garden paper music water light house road cloud tree bread chair"
    " green small old quick slow warm cold soft long short happy busy quiet north south under over"
).split()
_PARAPHRASES = (
    "the colour of {noun} is {kw}",
    "they said the colour of {noun} is {kw}",
    "the colour of the {noun} was {kw}",
    "we know the colour of {noun} is {kw}",
    "yes the colour of {noun} is {kw}",
    "the colour of {noun} is {kw} again",
)
_MEASURED = ("keyword_count", "lex_sum", "lex_above", "rep_sum", "delta_logp")
_SYLLABLES = ("ka", "lo", "mi", "ru", "ze", "po", "ta", "ni", "vu", "se", "do", "fi", "gu", "be", "xo", "we")


@dataclass(frozen=True)
class StudyItem:
    """One probe item of the study: its cell of the design, made-up noun and keyword."""

    name: str
    condition: str
    noun: str
    keyword: str

    @property
    def context(self) -> str:
        return f"the colour of {self.noun} is"


def _word(rng: random.Random, n: int, taken: set[str]) -> str:
    while True:
        w = "".join(rng.choice(_SYLLABLES) for _ in range(n))
        if w not in taken:
            taken.add(w)
            return w


def study_items(seed: int, per_condition: int) -> list[StudyItem]:
    """``per_condition`` items per cell, nouns of 2 syllables and keywords of 3, all distinct."""
    rng = random.Random(seed)
    taken: set[str] = set()
    items = []
    for c in CONDITIONS:
        for k in range(per_condition):
            items.append(StudyItem(f"{c}#{k}", c, _word(rng, 2, taken), _word(rng, 3, taken)))
    return items


def _pad(text: str, width: int, rng: random.Random) -> str:
    while len(text) < width:
        text += " " + rng.choice(_BACKGROUND)
    return text[:width]


def _background(rng: random.Random, width: int) -> str:
    return _pad(rng.choice(_BACKGROUND), width, rng)


def study_rows(items: list[StudyItem], seed: int, *, lines: int, rare: int, width: int) -> tuple[list[str], dict]:
    """The rows of one pass (item rows, then as many background rows), and the byte budget of
    each cell (rows x width) with its keyword rows."""
    rng = random.Random(seed + 1)
    rows: list[str] = []
    budget: dict[str, dict[str, int]] = {c: {"bytes": 0, "keyword_rows": 0} for c in CONDITIONS}
    for item in items:
        often, similar = item.condition[1] == "+", item.condition[3] == "+"
        n_kw = lines if often else rare
        for j in range(lines):
            if j < n_kw and similar:
                text = rng.choice(_PARAPHRASES).format(noun=item.noun, kw=item.keyword)
            elif j < n_kw:
                words = rng.sample(_BACKGROUND, 4)
                text = " ".join([*words[:2], item.keyword, *words[2:]])
            else:
                text = rng.choice(_BACKGROUND)
            row = _pad(text, width, rng)
            rows.append(row)
            budget[item.condition]["bytes"] += len(row)
            budget[item.condition]["keyword_rows"] += int(j < n_kw)
    rows += [_background(rng, width) for _ in range(len(rows))]
    return rows, budget


def run_study(
    seed: int, *, per_condition: int = 6, lines: int = 12, rare: int = 2, width: int = 64, epochs: int = 8,
    batch_size: int = 16, lr: float = 3e-3, every_n_steps: int = 16, n_boot: int = 1000,
) -> dict[str, Any]:
    """Train one seed and return the per-item final values, the cell means and the attribution."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tok = ByteTokenizer()
    items = study_items(seed, per_condition)
    rows, budget = study_rows(items, seed, lines=lines, rare=rare, width=width)
    data = torch.tensor([tok.encode(r) for r in rows], dtype=torch.long)
    model = TinyGPT(GPTConfig(block_size=max(96, width)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    probe = FrequencyProbe(
        [(it.name, it.context, it.keyword) for it in items], tok, layer="blocks.1", every_n_steps=every_n_steps,
        log_scalars=False,
    )
    gen = torch.Generator().manual_seed(seed)
    with ProbeLoop([probe], model) as loop:
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=gen)
            for b in range(0, len(data) - batch_size + 1, batch_size):
                ids = data[order[b : b + batch_size]]
                loop.observe_batch({"input_ids": ids})
                logits = model(ids)
                F.cross_entropy(logits[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1)).backward()
                loop.optimizer_step(opt)
                opt.zero_grad()
    last = {k: v.detach().cpu().double() for k, v in probe.history[-1].tensors.items()}
    cond = [it.condition for it in items]
    per_item = [
        {"item": it.name, "condition": it.condition, **{m: float(last[m][i]) for m in _MEASURED}}
        for i, it in enumerate(items)
    ]
    cells: dict[str, dict[str, float]] = {}
    for c in CONDITIONS:
        rows_c = [r for r in per_item if r["condition"] == c]
        cells[c] = {m: sum(r[m] for r in rows_c) / len(rows_c) for m in _MEASURED}
        cells[c].update(budget[c])
    y, fr = last["delta_logp"].numpy(), last["keyword_count"].numpy()
    attributions = {
        sim: attribute(y, fr, last[sim].numpy(), similarity_name=sim, n_boot=n_boot, seed=seed,
                       window=(0, int(probe.history[-1].step))).to_json()
        for sim in ("lex_sum", "lex_above", "rep_sum")
    }
    return {
        "seed": seed, "items": per_item, "cells": cells, "attribution": attributions, "conditions": cond,
        "steps": int(probe.history[-1].step), "seconds": time.perf_counter() - t0,
        "contrasts": contrasts(cells),
    }


def contrasts(cells: dict[str, dict[str, float]], metric: str = "delta_logp") -> dict[str, float]:
    """The 2 x 2 design's contrasts of ``metric``'s cell means: ``frequency`` = mean(F+) - mean(F-),
    ``similarity`` = mean(S+) - mean(S-), ``interaction`` = (F+S+ - F-S+) - (F+S- - F-S-)."""
    v = {c: cells[c][metric] for c in CONDITIONS}
    return {
        "frequency": (v["F+S+"] + v["F+S-"] - v["F-S+"] - v["F-S-"]) / 2,
        "similarity": (v["F+S+"] + v["F-S+"] - v["F+S-"] - v["F-S-"]) / 2,
        "interaction": (v["F+S+"] - v["F-S+"]) - (v["F+S-"] - v["F-S-"]),
    }
