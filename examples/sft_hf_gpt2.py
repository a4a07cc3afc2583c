"""SFT of a Hugging Face GPT-2 with the label-space and scored format probes, live console and run log.

Nothing is downloaded: a byte-level BPE tokenizer is trained on the fly (``tokenizers``) on
synthetic restaurant reviews, and a GPT-2 (``transformers.GPT2LMHeadModel``) is built from a
small config with random weights. A small LightningModule first pretrains it briefly on plain
review text (reviews followed by a rating, in either style, half and half; never the SFT templates
nor the words "positive" and "negative"), then fine-tunes it on two instruction templates, with
the loss on the answer tokens only:

* ``"review: the soup was tasty and the staff was friendly sentiment:"`` -> ``" positive"`` or
  ``" negative"`` (a classification task with a declared answer set);
* ``"review: ... rating:"`` -> an answer in one of two styles, numeric (``" 5/5"``, ``" 1/5"``) in
  70% of the SFT data and in words (``" five stars"``, ``" one star"``) in the other 30%.

While it trains, on held-out reviews and without sampling:

* a FormatProbe in scored mode with a :class:`~probes.formats.spec.LabelSpace` reads P(" positive")
  and P(" negative") after each sentiment prompt: ``1 - unclassified`` is the output-space
  conformity, the share of probability mass on the declared labels (Kung & Peng 2023 find that
  much of what instruction tuning teaches is this output space);
* a FormatProbe in scored mode with a :class:`~probes.formats.spec.FormatSpec` reads the probability of
  each answer style's prefixes after each rating prompt: the format distribution, its entropy and
  whether it collapses onto one style;
* a BenchmarkProbe scores the held-out sentiment questions (accuracy: is the right label the
  likelier one?);
* LiveConsole shows them (a live dashboard on a terminal, plain lines otherwise) and RunLog
  writes them to a run log, which the example reads back to print what the probes saw.

Usage::

    pip install 'probes[hf]'                 # transformers and tokenizers
    python examples/sft_hf_gpt2.py            # 300 + 200 steps, about 20 s on 2 CPU cores
    python examples/sft_hf_gpt2.py --quick    # CI smoke setting (200 + 120 steps)
    python examples/sft_hf_gpt2.py --out runs/sft   # then: probes summary runs/sft
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from probes import (
    Benchmark,
    BenchmarkProbe,
    Format,
    FormatProbe,
    FormatSpec,
    LabelSpace,
    LiveConsole,
    RunLog,
    open_run,
)

HF_HINT = "pip install 'probes[hf]'"

POSITIVE = ["great", "lovely", "superb", "tasty", "friendly", "fresh", "cheerful", "spotless"]
NEGATIVE = ["awful", "bland", "rude", "stale", "cold", "dirty", "gloomy", "noisy"]
NOUNS = ["food", "staff", "room", "coffee", "service", "bread", "music", "view", "soup", "garden"]
NUMERIC_SHARE = 0.7  # share of rating answers in the numeric style in the SFT data
EOS, PAD = "<|endoftext|>", "<pad>"

# The answer styles of the rating prompts. Scored mode reads the probability of each format's
# prefixes right after the prompt; the regexes classify generated text (rollout/sampled modes).
RATING_FORMATS = FormatSpec(
    [
        Format("numeric", regex=r"\A\s*[15]/5", prefixes=(" 5/5", " 1/5")),
        Format("words", regex=r"\A\s*(five|one) stars?", prefixes=(" five stars", " one star")),
    ]
)


def review(rng: random.Random, positive: bool) -> str:
    """A two-clause review whose adjectives share one polarity."""
    words = POSITIVE if positive else NEGATIVE
    a, b = rng.sample(NOUNS, 2)
    return f"the {a} was {rng.choice(words)} and the {b} was {rng.choice(words)}"


def verdict(rng: random.Random, positive: bool, numeric_share: float) -> str:
    """A rating in the numeric style (" 5/5") with probability ``numeric_share``, else in words."""
    if rng.random() < numeric_share:
        return " 5/5" if positive else " 1/5"
    return " five stars" if positive else " one star"


def pretraining_text(rng: random.Random) -> str:
    """Plain text for the short pretraining phase: reviews followed by a rating in either style
    (half and half), never the SFT templates or the words "positive" and "negative"."""
    positive = rng.random() < 0.5
    return f"{review(rng, positive)}, so{verdict(rng, positive, 0.5)}."


def sft_example(rng: random.Random) -> tuple[str, str]:
    """One (prompt, answer) pair: a sentiment question, or a rating in one of two styles."""
    positive = rng.random() < 0.5
    text = review(rng, positive)
    if rng.random() < 0.5:
        return f"review: {text} sentiment:", " positive" if positive else " negative"
    return f"review: {text} rating:", verdict(rng, positive, NUMERIC_SHARE)


def held_out(seen: set[str], n: int, seed: int) -> list[tuple[str, bool]]:
    """``n`` reviews (half positive) that are not in ``seen`` (the training data)."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        positive = len(out) % 2 == 0
        text = review(rng, positive)
        if text not in seen and all(text != t for t, _ in out):
            out.append((text, positive))
    return out


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (as GPT-2's, but tiny)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[PAD, EOS],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class SFTData(torch.utils.data.Dataset):
    """Tokenized (prompt, answer) rows; labels are -100 on the prompt (loss on the answer only)."""

    def __init__(self, pairs: list[tuple[str, str]], tok: Any) -> None:
        eos = tok.token_to_id(EOS)
        self.rows = []
        for prompt, answer in pairs:
            p = tok.encode(prompt).ids
            ids = [*tok.encode(prompt + answer).ids, eos]
            if ids[: len(p)] != p:  # the byte-level pre-tokenizer splits at the space before the answer
                raise ValueError(f"prompt tokens of {prompt!r} are not a prefix of prompt + answer")
            self.rows.append((ids, len(p)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.rows[i]


def collate(pad_id: int) -> Callable[[list[tuple[list[int], int]]], dict[str, torch.Tensor]]:
    """Right-pad a batch; the attention mask and the -100 labels hide the padding."""

    def fn(rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, (ids, n_prompt) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
            labels[r, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])  # GPT-2 shifts labels itself
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    return fn


class SFTModule(pl.LightningModule):
    """The LightningModule you would already have: a causal LM under ``self.model``, AdamW."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.losses: list[float] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.losses.append(float(loss.detach()))
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def first_step(steps: np.ndarray, values: np.ndarray, threshold: float) -> int:
    """First step whose value reaches ``threshold`` (-1 if none)."""
    hits = np.nonzero(values >= threshold)[0]
    return int(steps[hits[0]]) if len(hits) else -1


def report(run_dir: Path) -> None:
    """Print what the probes saw, read back from the run log."""
    run = open_run(run_dir)
    steps, labels = run.read("labels/dist")  # [n, 3]: positive, negative, other (mean over prompts)
    _, formats = run.read("rating_format/dist")  # [n, 3]: numeric, words, other
    _, entropy = run.read("rating_format/entropy_bits")
    b_steps, accuracy = run.read("sentiment/accuracy")  # [n, 1]
    acc = dict(zip(b_steps.tolist(), accuracy[:, 0].tolist()))
    conformity = 1.0 - labels[:, 2]
    print(f"\n{'step':>5} | {'conformity':>10} {'P(pos)':>7} {'P(neg)':>7} | {'numeric':>7} {'words':>6}"
          f" {'other':>6} {'H bits':>6} | {'accuracy':>8}")
    show = sorted(set(range(0, len(steps), max(1, len(steps) // 8))) | {len(steps) - 1})
    for k in show:
        s = int(steps[k])
        a = f"{acc[s]:8.2f}" if s in acc else " " * 8
        print(f"{s:5d} | {conformity[k]:10.3f} {labels[k, 0]:7.3f} {labels[k, 1]:7.3f} | {formats[k, 0]:7.3f}"
              f" {formats[k, 1]:6.3f} {formats[k, 2]:6.3f} {entropy[k]:6.3f} | {a}")
    named = formats[-1, :2] / formats[-1, :2].sum()
    _, collapsed = run.read("rating_format/collapsed")
    print(f"\nlabel-space conformity {conformity[0]:.3f} -> {conformity[-1]:.3f}"
          f" (>= 0.9 from step {first_step(steps, conformity, 0.9)})")
    print(f"held-out accuracy {accuracy[0, 0]:.2f} -> {accuracy[-1, 0]:.2f}"
          f" (>= 0.9 from step {first_step(b_steps, accuracy[:, 0], 0.9)})")
    print(f"rating styles at the end: numeric {named[0]:.3f}, words {named[1]:.3f} of classified"
          f" (SFT data {NUMERIC_SHARE:.2f} / {1 - NUMERIC_SHARE:.2f}); entropy {entropy[-1]:.3f} bits;"
          f" collapsed: {'yes' if collapsed.any() else 'no'}")
    print(f"run log: {run_dir} ({len(steps)} readings per probe; try `probes summary {run_dir}`)")


def trainer(steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke setting (fewer steps)")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="plain-text steps (default 300, quick 200)")
    parser.add_argument("--steps", type=int, default=None, help="SFT steps (default 200, quick 120)")
    parser.add_argument("--every", type=int, default=None, help="probe every N SFT steps (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="run-log directory (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for tiny models)")
    args = parser.parse_args(argv)
    try:  # the optional `hf` extra
        import tokenizers  # noqa: F401
        import transformers
    except ImportError as err:
        print(f"This example needs transformers and tokenizers ({err}). Install them with: {HF_HINT}", file=sys.stderr)
        return 2
    pretrain_steps = args.pretrain_steps or (200 if args.quick else 300)
    steps = args.steps or (120 if args.quick else 200)
    every = args.every or 10
    out = args.out or Path(tempfile.mkdtemp(prefix="sft_hf_gpt2-")) / "run"
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
    pl.seed_everything(args.seed, verbose=False)

    # Data: plain review text to pretrain on, SFT pairs, a BPE tokenizer trained on all of it, and
    # held-out reviews (in neither) for the probes.
    rng = random.Random(args.seed)
    batch = 16
    plain = [("", pretraining_text(rng)) for _ in range(pretrain_steps * batch)]
    pairs = [sft_example(rng) for _ in range(steps * batch)]
    tok = train_tokenizer([t for _, t in plain] + [p + a for p, a in pairs], vocab_size=400)
    pad = tok.token_to_id(PAD)
    seen = {t.split(",", 1)[0] for _, t in plain} | {p.split("review: ", 1)[1].rsplit(" ", 1)[0] for p, _ in pairs}
    test = held_out(seen, 16, seed=args.seed + 1)
    sentiment_prompts = [f"review: {t} sentiment:" for t, _ in test]
    rating_prompts = [f"review: {t} rating:" for t, _ in test]

    # Model: GPT-2 from a small config (random weights), briefly pretrained on the plain text.
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=64, n_layer=2,
                                     n_head=4, bos_token_id=tok.token_to_id(EOS), eos_token_id=tok.token_to_id(EOS))
    module = SFTModule(transformers.GPT2LMHeadModel(config), lr=2e-3)
    start = time.perf_counter()
    trainer(pretrain_steps, []).fit(module, DataLoader(SFTData(plain, tok), batch_size=batch, collate_fn=collate(pad)))
    print(f"pretrained {pretrain_steps} steps on plain reviews: loss {module.losses[0]:.3f} -> {module.losses[-1]:.3f}"
          f" ({time.perf_counter() - start:.1f} s; GPT-2 with {sum(p.numel() for p in module.parameters()):,}"
          f" parameters, BPE vocabulary {tok.get_vocab_size()})")

    # The probes: sampling-free readings of the held-out prompts every `every` SFT steps.
    labels = FormatProbe(LabelSpace(["positive", "negative"]), mode="scored", name="labels",
                         prompts=sentiment_prompts, tokenizer=tok, model="model", every_n_steps=every)
    rating_format = FormatProbe(RATING_FORMATS, mode="scored", name="rating_format",
                                prompts=rating_prompts, tokenizer=tok, model="model", every_n_steps=every)
    questions = [(p, ["positive", "negative"], 0 if pos else 1) for p, (_, pos) in zip(sentiment_prompts, test)]
    sentiment = BenchmarkProbe(Benchmark("sentiment", questions), tok, name="sentiment", model="model",
                               every_n_steps=every)
    console = LiveConsole(mode="auto", plain_every_n_steps=max(every, steps // 4))  # plain lines when not a TTY
    callbacks = [labels, rating_format, sentiment, console, RunLog(out, run_info={"example": "sft_hf_gpt2"})]
    module.losses.clear()
    start = time.perf_counter()
    trainer(steps, callbacks).fit(module, DataLoader(SFTData(pairs, tok), batch_size=batch, collate_fn=collate(pad)))
    print(f"SFT: {steps} steps in {time.perf_counter() - start:.1f} s, loss {module.losses[0]:.3f} ->"
          f" {module.losses[-1]:.3f}")
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
