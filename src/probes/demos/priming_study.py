"""A controlled priming study after Sun et al. 2025 (arXiv 2504.09522), on the tiny byte-level LM.

**Samples.** 48 learning samples over 4 themes (colour, taste, sound, texture), 12 per theme, each
with its own three priming contexts (true facts of the same theme). Every sample teaches a new
subject (a made-up word, so the fact is new) a keyword chosen to span P_before:

* ``common``: an ordinary attribute of the theme (hundreds of occurrences in pretraining);
* ``f60``, ``f20``, ``f6``, ``f2``: a made-up word that occurs exactly that many times in the
  pretraining corpus, always in the theme's template with other made-up subjects: its frequency,
  not its form, is what differs between levels;
* ``never``: a made-up word of the same shape that never occurs (reported separately).

So 40 of the 48 keywords are in the corpus, and P_before is controlled by frequency rather than by
never-seen words. The word shapes are drawn from one seeded syllable generator for every level.

**Protocol** (the paper's): the model is pretrained once on the study corpus; then, for each sample
and each *variant*, training continues from the same weights and optimizer state with the sample
replacing one row of a minibatch every ``every`` minibatches for ``presentations`` presentations.
A :class:`~probes.callbacks.PrimingProbe` takes the baseline at step 0 (before the first
exposure) and reads both score modes; a second one with ``score="first"`` gives the first-token
absolute changes. Variants:

* ``plain``: 3 presentations (the minimum the paper's protocol uses); ``long``: 10;
* ``ignore_topk``: ``plain`` with :class:`~probes.callbacks.IgnoreTopK` (k = 8%);
* ``stepping_stones``: ``plain`` with the text augmented by :func:`probes.priming.augment.stepping_stone_text`
  (two ordinary attributes of the theme on the way to the keyword);
* ``control``: the same continued training without the sample (the drift of every score when
  nothing is learned).

No setting here was tuned to produce an effect: the sizes are the library's defaults and the
levels were fixed before the first run.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import lightning.pytorch as pl
import torch

from probes.callbacks import PrimingProbe
from probes.callbacks.ignore_topk import IgnoreTopK
from probes.demos.corpus import THEMES, Theme, WindowDataset
from probes.demos.lm import ContinuedLM, TinyLM
from probes.demos.tiny_gpt import GPTConfig
from probes.demos.tokenizer import ByteTokenizer
from probes.priming.augment import stepping_stone_text
from probes.priming.injection import InjectedLoader
from probes.priming.spec import LearningSample

__all__ = [
    "LEVELS",
    "VARIANTS",
    "StudySample",
    "learn_sample",
    "pretrain_study_model",
    "study_corpus",
    "study_samples",
    "study_themes",
]

TOK = ByteTokenizer()
#: keyword frequency levels: name -> occurrences in the pretraining corpus (common: the theme's own)
LEVELS: dict[str, Optional[int]] = {"common": None, "f60": 60, "f20": 20, "f6": 6, "f2": 2, "never": 0}
#: samples per level within a theme (12 per theme)
PER_LEVEL = {"common": 2, "f60": 2, "f20": 2, "f6": 2, "f2": 2, "never": 2}
VARIANTS = ("plain", "long", "ignore_topk", "stepping_stones", "control")

TEXTURE = Theme(
    "texture",
    "the texture of {subject} is",
    {"silk": "smooth", "sand": "rough", "glass": "smooth", "bark": "rough", "wool": "soft",
     "stone": "hard", "a pillow": "soft", "iron": "hard"},
)


def study_themes() -> tuple[Theme, ...]:
    """The corpus themes plus ``texture``: four themes."""
    return (*THEMES, TEXTURE)


def _words(n: int, seed: int, avoid: set[str]) -> list[str]:
    """``n`` distinct made-up words of two or three consonant-vowel syllables."""
    rng = random.Random(seed)
    cons, vows = "bdfgklmnprstvz", "aeiou"
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.choice((2, 3))))
        if w not in avoid and not any(w in a or a in w for a in out):
            out.append(w)
            avoid.add(w)
    return out


@dataclass(frozen=True)
class StudySample:
    """A study sample: the learning sample, its theme, frequency level, pretraining count, stones."""

    sample: LearningSample
    theme: str
    level: str
    count: int
    stones: tuple[str, str]


def study_samples(seed: int = 0) -> tuple[list[StudySample], dict[str, list[tuple[str, str]]]]:
    """The 48 samples and, per theme, the (filler subject, keyword) sentences to put in pretraining."""
    themes = study_themes()
    avoid = {w for t in themes for pair in t.facts.items() for w in " ".join(pair).split()}
    n_made = sum(n for lvl, n in PER_LEVEL.items() if lvl != "common")
    samples: list[StudySample] = []
    fillers: dict[str, list[tuple[str, str]]] = {}
    for ti, theme in enumerate(themes):
        subjects = list(theme.facts)
        attributes = sorted(set(theme.facts.values()))
        new_subjects = _words(sum(PER_LEVEL.values()), seed * 100 + ti, avoid)
        keywords = iter(_words(n_made, seed * 100 + 50 + ti, avoid))
        filler_subjects = _words(4, seed * 100 + 80 + ti, avoid)
        fillers[theme.name] = []
        k = 0
        for level, n in PER_LEVEL.items():
            for j in range(n):
                subject = new_subjects[k]
                keyword = attributes[j % len(attributes)] if level == "common" else next(keywords)
                count = LEVELS[level]
                if level != "common":
                    for c in range(count or 0):
                        fillers[theme.name].append((f"the {filler_subjects[c % 4]}", keyword))
                prefixes = [theme.context(subjects[(k + d) % len(subjects)]) for d in (0, 3, 6)]
                stones = tuple(a for a in attributes if a != keyword)[:2]
                text = f"{theme.context('the ' + subject)} {keyword}."
                sample = LearningSample(f"{theme.name}-{level}-{subject}", text, keyword, prefixes, group=theme.name)
                samples.append(StudySample(sample, theme.name, level, -1 if count is None else count, stones))  # type: ignore[arg-type]
                k += 1
    return samples, fillers


def study_corpus(n_sentences: int = 4000, *, seed: int = 0) -> str:
    """True facts of the four themes plus every filler sentence of :func:`study_samples`, shuffled."""
    rng = random.Random(seed)
    themes = study_themes()
    pool = [(t, s) for t in themes for s in t.facts]
    sentences = [t.sentence(s, t.facts[s]) for t, s in (rng.choice(pool) for _ in range(n_sentences))]
    _, fillers = study_samples(seed)
    by_name = {t.name: t for t in themes}
    for theme, rows in fillers.items():
        sentences += [by_name[theme].sentence(subject, keyword) for subject, keyword in rows]
    rng.shuffle(sentences)
    return ". ".join(sentences) + "."


def _loader(text: str, n_windows: int, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    ds = WindowDataset(TOK.encode(text), 64, n_windows, seed=seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def _trainer(steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, accelerator="cpu",
    )


def pretrain_study_model(
    steps: int = 600, *, batch_size: int = 16, seed: int = 0, config: Optional[GPTConfig] = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], float]:
    """Pretrain TinyLM on :func:`study_corpus`; returns weights, optimizer state and final loss."""
    pl.seed_everything(seed, verbose=False)
    model = TinyLM(config, lr=3e-3)
    trainer = _trainer(steps, [])
    trainer.fit(model, _loader(study_corpus(seed=seed), steps * batch_size, batch_size, seed))
    return copy.deepcopy(model.state_dict()), copy.deepcopy(trainer.optimizers[0].state_dict()), model.losses[-1]


def learn_sample(
    item: StudySample, variant: str, weights: dict[str, torch.Tensor], opt_state: dict[str, Any], *,
    every: int = 4, lr: float = 1e-3, batch_size: int = 16, seed: int = 0, config: Optional[GPTConfig] = None,
) -> dict[str, Any]:
    """Continue training with ``item`` injected under ``variant``; the final reading's figures."""
    if variant not in VARIANTS:
        raise ValueError(f"Expected `variant` in {VARIANTS}, got {variant!r}.")
    presentations = 10 if variant == "long" else 3
    steps = presentations * every
    pl.seed_everything(seed + 1, verbose=False)
    model = ContinuedLM(weights, opt_state, lr, config)
    corpus = _loader(study_corpus(seed=seed), steps * batch_size, batch_size, seed + 1)
    sample = item.sample
    texts = {sample.name: stepping_stone_text(sample, item.stones)} if variant == "stepping_stones" else None
    loader: Any = corpus if variant == "control" else InjectedLoader(
        corpus, [sample], TOK, presentations=presentations, every=every, texts=texts, widen=True,
    )
    seq = PrimingProbe([sample], TOK, model="model", baseline=0, count_exposures=False, name="seq")
    first = PrimingProbe([sample], TOK, model="model", baseline=0, count_exposures=False, name="first", score="first")
    callbacks: list[pl.Callback] = [seq, first] + ([IgnoreTopK(0.08)] if variant == "ignore_topk" else [])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(steps, callbacks).fit(model, loader)
    a, b = seq.latest(), first.latest()
    return {
        "name": sample.name, "theme": item.theme, "level": item.level, "count": item.count,
        "keyword": sample.keyword, "variant": variant, "presentations": 0 if variant == "control" else presentations,
        **{k: float(a[k][0]) for k in ("log10_p_before_seq", "log10_p_before_first", "log10_s_mem_seq",
                                         "log10_s_mem_first", "log10_s_prime_seq", "log10_s_prime_first")},
        "delta_p_prime_seq": float(a["delta_p_prime"][0]),
        "delta_p_prime_first": float(b["delta_p_prime"][0]),
        "delta_p_learn_seq": float(a["delta_p_learn"][0]),
        "seconds": time.perf_counter() - start,
    }
