"""Teacher refinements inside vs far outside the student's distribution, and SFT on what it accepts.

The student is the tiny GPT pretrained on the synthetic themed corpus (lower-case sentences such as
``"the colour of sand is yellow"``). For each of the 28 facts, the instruction
``"Q: colour of sand?"`` has the original response ``"A: yellow"`` and two refinements a teacher
might write:

* inside the student's distribution: ``"A: the colour of sand is yellow"`` (the corpus's own words);
* far outside it: ``"A: Sand Exhibits A Predominantly YELLOW Colour!"`` (capitals, words and
  punctuation the corpus never contains; the same template for every fact).

**Part 1, over pretraining.** A :class:`~probes.frontier.probe.RefinementProbe` per group reads the
student's IFD and r-IFD of both responses and the accept decision of Selective Reflection-Tuning
(refined r-IFD below the original's, and refined IFD < 1 and r-IFD < 1). It prints, per reading,
the accepted fraction and the mean r-IFD difference (refined - original) of each group, as mean over
seeds with a 95% t-interval across seeds.

**Part 2, SFT on accepted vs all refinements** (the student as it was at the selection reading,
step ``2 * steps // 5``: step 80 of 200, where the accepted fractions of both groups were highest in
the first runs of part 1). Per seed, 4 facts per theme (12) are held out of every SFT set; the other
16 form the refinement pool, each with *one* refinement, half of them (at random) the inside one
and half the outside one. The accept decisions are the probe's, read from its record at the selection
step. Each arm fine-tunes a copy of that student for the same number of AdamW steps (same learning
rate, batch and batch-sampling seed; loss on the response tokens only) on:

* ``original``: the 16 original responses ``"A: yellow"``;
* ``all``: the 16 refinements;
* ``random``: a random subset of the refinements of the size of the accepted set (the control for
  training on fewer items; mean over 3 draws per seed);
* ``accepted``: the refinements the probe accepted;
* ``none`` is the student without SFT (for orientation).

It also prints what the student knows at the selection step and at the end of pretraining: the
fraction of the 28 facts whose corpus sentence (``"the colour of sand is"``) it completes correctly.

Held-out measures, fixed before the first run:

* **held-out accuracy** (the main one): for each of the 12 held-out facts, the student's greedy
  answer to ``"Q: colour of sand? A:"`` (up to 40 bytes, cut at the first ``.``, ``!`` or ``?``) is
  correct when the first of the theme's attribute words it contains (case-insensitive, whole words)
  is the true attribute. It asks whether SFT taught the student to answer questions it was not
  fine-tuned on with what it knows, whatever the answer's style: each of the three response styles
  contains the attribute word, so no style is favoured by the scorer.
* **held-out corpus loss**: next-token cross-entropy (nats per byte) of the student on 64 windows of
  the pretraining corpus drawn with another seed: how much of what it learned in pretraining the SFT
  disturbs.

Both are printed per arm and as paired differences (same seed, same student, same held-out facts),
mean [95% t-interval over seeds].

Run::

    python examples/refinement_frontier.py              # 5 seeds, about two minutes on 2 cores
    python examples/refinement_frontier.py --quick      # CI smoke setting
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from scipy import stats

from probes.demos import THEMES, ByteTokenizer, GPTConfig, Theme, TinyGPT, corpus_loader
from probes.frontier.probe import RefinementProbe
from probes.integrations.loop import ProbeLoop

CFG = GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=96)
GROUPS = ("inside", "outside")
PREFIX = ". "
#: SFT settings, fixed before the first run
HELD_OUT_PER_THEME = 4
SFT_LR = 1e-3
SFT_BATCH = 8
RANDOM_DRAWS = 3
ANSWER_BYTES = 40
HELD_OUT_WINDOWS = 64
ARMS = ("none", "original", "all", "random", "accepted")


def facts() -> list[tuple[Theme, str, str]]:
    return [(t, s, a) for t in THEMES for s, a in t.facts.items()]


def question(theme: Theme, subject: str) -> str:
    return f"Q: {theme.name} of {subject}?"


def refinement(theme: Theme, subject: str, attr: str, group: str) -> str:
    return (f"A: {theme.sentence(subject, attr)}" if group == "inside"
            else f"A: {subject.title()} Exhibits A Predominantly {attr.upper()} {theme.name.title()}!")


def samples(group: str) -> list[tuple[str, str, str, str]]:
    return [(f"{t.name}/{s}", question(t, s), f"A: {a}", refinement(t, s, a, group)) for t, s, a in facts()]


def split(seed: int) -> tuple[list[tuple[str, str]], list[str]]:
    """``(pool, held_out)``: pool items are ``(fact name, group of its one refinement)``."""
    rng = random.Random(seed)
    held, pool = [], []
    for t in THEMES:
        names = [f"{t.name}/{s}" for s in t.facts]
        rng.shuffle(names)
        held += names[:HELD_OUT_PER_THEME]
        pool += names[HELD_OUT_PER_THEME:]
    groups = [GROUPS[i % 2] for i in range(len(pool))]
    rng.shuffle(groups)
    return list(zip(pool, groups)), held


# --- SFT ------------------------------------------------------------------------------------------


def sft_text(instruction: str, response: str) -> tuple[str, str]:
    """``(prompt, target)``: the probe's start text and separator; a terminal ``.`` unless present."""
    return f"{PREFIX}{instruction}", f" {response}" + ("" if response[-1] in ".!?" else ".")


def finetune(student: dict[str, torch.Tensor], pairs: Sequence[tuple[str, str]], steps: int, seed: int) -> TinyGPT:
    """A copy of ``student`` after ``steps`` AdamW steps on batches drawn (with replacement, by a
    seeded generator that is the same for every arm) from ``pairs``; loss on the target bytes only."""
    tok = ByteTokenizer()
    model = TinyGPT(CFG)
    model.load_state_dict(student)
    opt = torch.optim.AdamW(model.parameters(), lr=SFT_LR)
    rows = []
    for prompt, target in pairs:
        p, a = tok.encode(prompt), tok.encode(target)
        rows.append((p + a, [-100] * len(p) + a))
    rng = random.Random(seed)
    for _ in range(steps):
        batch = [rows[rng.randrange(len(rows))] for _ in range(SFT_BATCH)]
        width = max(len(r[0]) for r in batch)
        ids = torch.tensor([r[0] + [0] * (width - len(r[0])) for r in batch])
        labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in batch])
        logits = model(ids[:, :-1])  # position t predicts token t + 1
        torch.nn.functional.cross_entropy(logits.reshape(-1, 256), labels[:, 1:].reshape(-1),
                                          ignore_index=-100).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@torch.no_grad()
def greedy_answers(model: TinyGPT, prompts: Sequence[str], n: int = ANSWER_BYTES) -> list[str]:
    """The greedy continuation (bytes) of each prompt, cut before the first ``.``, ``!`` or ``?``.

    The prompts run as one right-padded batch: under causal attention the logits at a row's own last
    position do not see the padding after it, so each row continues as it would alone."""
    tok = ByteTokenizer()
    rows = [tok.encode(p) for p in prompts]
    lengths = [len(r) for r in rows]
    ids = torch.zeros(len(rows), max(lengths) + n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    done = [False] * len(rows)
    out: list[list[int]] = [[] for _ in rows]
    for _ in range(n):
        logits = model(ids[:, : max(lengths)])
        for i in range(len(rows)):
            if done[i]:
                continue
            nxt = int(logits[i, lengths[i] - 1].argmax())
            out[i].append(nxt)
            ids[i, lengths[i]] = nxt
            lengths[i] += 1
            done[i] = chr(nxt) in ".!?"
        if all(done):
            break
    return [re.split(r"[.!?]", tok.decode(o))[0] for o in out]


def answer_correct(answer: str, theme: Theme, attr: str) -> bool:
    """Whether the first of the theme's attribute words in ``answer`` (case-insensitive, whole
    words) is ``attr``."""
    words = sorted(set(theme.facts.values()), key=len, reverse=True)
    m = re.search(r"\b(" + "|".join(map(re.escape, words)) + r")\b", answer, re.IGNORECASE)
    return m is not None and m.group(1).lower() == attr


def knowledge(model: TinyGPT) -> float:
    """The fraction of the 28 facts whose corpus sentence the student completes correctly (greedy
    continuation of ``"the colour of sand is"``, scored as :func:`answer_correct`): what it knows,
    in the form it was pretrained on."""
    items = facts()
    answers = greedy_answers(model.eval(), [f"{PREFIX}{t.context(s)}" for t, s, _ in items])
    return float(np.mean([answer_correct(ans, t, a) for ans, (t, _, a) in zip(answers, items)]))


def held_out_accuracy(model: TinyGPT, held: Sequence[str]) -> float:
    by_name = {f"{t.name}/{s}": (t, s, a) for t, s, a in facts()}
    items = [by_name[n] for n in held]
    answers = greedy_answers(model, [f"{PREFIX}{question(t, s)} A:" for t, s, _ in items])
    hits = [answer_correct(ans, t, a) for ans, (t, _, a) in zip(answers, items)]
    return float(np.mean(hits))


@torch.no_grad()
def corpus_loss(model: TinyGPT, seed: int) -> float:
    """Mean next-token cross-entropy (nats per byte) over held-out corpus windows."""
    total, count = 0.0, 0
    for b in corpus_loader(n_windows=HELD_OUT_WINDOWS, batch_size=16, block_size=64, seed=10_000 + seed):
        logits = model(b["input_ids"])
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, 256).double(), b["labels"].reshape(-1),
                                                         reduction="sum"))
        count += b["labels"].numel()
    return total / count


def sft_arms(student: dict[str, torch.Tensor], decisions: dict[str, dict[str, bool]], seed: int,
             sft_steps: int) -> dict[str, Any]:
    """Per arm ``{"accuracy", "loss", "n"}`` and the pool's composition, for one seed."""
    pool, held = split(seed)
    by_name = {f"{t.name}/{s}": (t, s, a) for t, s, a in facts()}

    def pairs(items: Sequence[tuple[str, str]], original: bool = False) -> list[tuple[str, str]]:
        out = []
        for name, group in items:
            t, s, a = by_name[name]
            out.append(sft_text(question(t, s), f"A: {a}" if original else refinement(t, s, a, group)))
        return out

    accepted = [(n, g) for n, g in pool if decisions[g][n]]

    def measure(model: TinyGPT) -> tuple[float, float]:
        return held_out_accuracy(model, held), corpus_loss(model, seed)

    student_model = TinyGPT(CFG)
    student_model.load_state_dict(student)
    arms: dict[str, dict[str, float]] = {}
    for arm, items, original in (("none", [], False), ("original", pool, True), ("all", pool, False),
                                 ("accepted", accepted, False)):
        if arm == "none":
            acc, loss = measure(student_model.eval())
        elif not items:
            acc, loss = math.nan, math.nan
        else:
            acc, loss = measure(finetune(student, pairs(items, original), sft_steps, seed))
        arms[arm] = {"accuracy": acc, "loss": loss, "n": len(items) if arm != "none" else 0}
    rng = random.Random(20_000 + seed)
    draws = [measure(finetune(student, pairs(rng.sample(pool, len(accepted))), sft_steps, seed))
             for _ in range(RANDOM_DRAWS)] if accepted else [(math.nan, math.nan)]
    arms["random"] = {"accuracy": float(np.mean([d[0] for d in draws])), "loss": float(np.mean([d[1] for d in draws])),
                      "n": len(accepted)}
    return {
        "seed": seed,
        "held_out": held,
        "pool": [list(p) for p in pool],
        "accepted": [n for n, _ in accepted],
        "accepted_inside": sum(g == "inside" for _, g in accepted),
        "arms": arms,
    }


# --- pretraining with the probes ------------------------------------------------------------------


def run_seed(seed: int, steps: int, every: int, select: int, out: Path) -> dict[str, Any]:
    """Pretrain with the two probes; returns the per-reading series of part 1, the student's weights
    at step ``select`` (also saved to ``seed{seed}/student.pt``) and the decisions read there."""
    torch.manual_seed(seed)
    model = TinyGPT(CFG)
    tok = ByteTokenizer()
    probes = [RefinementProbe(samples(g), tok, name=g, prefix=PREFIX, reverse_template="{answer}. ",
                              every_n_steps=every) for g in GROUPS]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = corpus_loader(n_windows=16 * steps, batch_size=16, block_size=64, seed=seed)
    student: Optional[dict[str, torch.Tensor]] = None
    with ProbeLoop(probes, model, run_log=out / f"seed{seed}") as loop:
        for i, b in enumerate(loader, start=1):
            logits = model(b["input_ids"])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), b["labels"].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
            if i == select:
                student = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert student is not None
    torch.save(student, out / f"seed{seed}" / "student.pt")
    result: dict[str, Any] = {"knows_final": knowledge(model)}
    model.load_state_dict(student)
    result["knows_select"] = knowledge(model)
    decisions: dict[str, dict[str, bool]] = {}
    for p in probes:
        steps_read, accepted = p.series("accepted")
        result[p.source] = {
            "steps": np.array(steps_read),
            "accepted": accepted.float().mean(dim=1).numpy(),
            "d_r_ifd": p.series("d_r_ifd")[1].double().mean(dim=1).numpy(),
            "preferred": p.series("preferred")[1].float().mean(dim=1).numpy(),
        }
        row = accepted[steps_read.index(select)]
        decisions[p.source] = {s.name: bool(v) for s, v in zip(p.samples, row.tolist())}
    result["student"] = student
    result["decisions"] = decisions
    return result


def t_interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite values: 95% t-interval over seeds (NaN bounds for n < 2)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan, 1
    h = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h, int(v.size)


def interval(values: Sequence[float]) -> str:
    m, lo, hi, n = t_interval(values)
    if n < 2:
        return f"{m:6.3f}"
    return f"{m:6.3f} [{lo:6.3f},{hi:6.3f}]"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sft-steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/refinement_frontier"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = args.seeds or (2 if args.quick else 5)
    steps = args.steps or (20 if args.quick else 200)
    sft_steps = args.sft_steps or (10 if args.quick else 80)
    every = max(1, steps // 5)
    select = min(2 * every, steps)
    results = [run_seed(s, steps, every, select, args.out) for s in range(seeds)]
    print(f"refinements accepted by the student (28 facts per group): {seeds} seeds, {steps} AdamW steps;"
          " mean [95% t-interval over seeds]")
    head = "".join(f"{g + ' ' + m:>26s}" for g in GROUPS for m in ("accepted", "d r-IFD"))
    print(f"  {'step':>5s}{head}")
    for j, step in enumerate(results[0]["inside"]["steps"]):
        cells = "".join(f"{interval(np.array([r[g][m][j] for r in results])):>26s}"
                        for g in GROUPS for m in ("accepted", "d_r_ifd"))
        print(f"  {int(step):5d}{cells}")

    study = [{**sft_arms(r["student"], r["decisions"], s, sft_steps), "knows_select": r["knows_select"],
              "knows_final": r["knows_final"]} for s, r in enumerate(results)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_study.json").write_text(json.dumps(
        {"seeds": seeds, "steps": steps, "select": select, "sft_steps": sft_steps, "per_seed": study},
        indent=1, allow_nan=True))
    pool = len(study[0]["pool"])
    sizes = [len(s["accepted"]) for s in study]
    inside = [s["accepted_inside"] / len(s["accepted"]) if s["accepted"] else math.nan for s in study]
    print()
    print(f"SFT of the student at step {select} on a pool of {pool} refinements (half inside, half outside),"
          f" {sft_steps} AdamW steps per arm (lr {SFT_LR}, batch {SFT_BATCH}); held out: {len(study[0]['held_out'])}"
          " facts in no SFT set")
    print(f"  accepted set: size {interval(sizes)}, inside fraction {interval(inside)} (the pool: 0.5)")
    print("  facts the student completes in the corpus's own form (28 facts): at step"
          f" {select} {interval([r['knows_select'] for r in results])}, at step {steps}"
          f" {interval([r['knows_final'] for r in results])}")
    print(f"  {'arm':16s}{'n':>6s}{'held-out accuracy':>26s}{'corpus loss (nats/byte)':>28s}")
    for arm in ARMS:
        n = np.mean([s["arms"][arm]["n"] for s in study])
        acc = [s["arms"][arm]["accuracy"] for s in study]
        loss = [s["arms"][arm]["loss"] for s in study]
        print(f"  {arm:16s}{n:6.1f}{interval(acc):>26s}{interval(loss):>28s}")
    print("  paired differences (same seed and student)")
    for a, b in (("accepted", "random"), ("accepted", "all"), ("all", "original"), ("random", "all")):
        acc = [s["arms"][a]["accuracy"] - s["arms"][b]["accuracy"] for s in study]
        loss = [s["arms"][a]["loss"] - s["arms"][b]["loss"] for s in study]
        print(f"  {a + ' - ' + b:22s}{interval(acc):>26s}{interval(loss):>28s}")


if __name__ == "__main__":
    main()
