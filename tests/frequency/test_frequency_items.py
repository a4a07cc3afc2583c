"""Every item type of the FrequencyProbe (keyword pairs, learning samples, format prompts,
benchmark questions), mixed in one probe, against references written here.

The items' keyword, context, separator and name follow the documented rule of each type
(:mod:`probes.frequency.spec`), spelled out by hand below. Keyword counts are checked against a
brute-force count over *token strings* (the tokenizer's pieces, matched as sequences, with the
word-boundary rule applied to the piece texts), context n-gram counts and lexical similarity
against n-gram *tuples* of pieces in Python sets, ``logp`` against a plain forward of the model;
through :class:`~probes.integrations.loop.ProbeLoop` with gradient accumulation, and under a
Lightning Trainer against a string search over the decoded batches.
"""

from __future__ import annotations

import random
import re
import string

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

import probes
from probes.choice.probe import BenchmarkProbe
from probes.choice.spec import Benchmark, BenchmarkSuite, Question
from probes.demos import ByteTokenizer, TinyLM, corpus_loader
from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.formats.probe import FormatProbe
from probes.formats.spec import Format, FormatSpec, LabelSpace
from probes.frequency.probe import FrequencyProbe
from probes.frequency.spec import FormatPrompts, FrequencyItem, as_items
from probes.integrations.loop import ProbeLoop
from probes.priming.probe import PrimingProbe
from probes.priming.spec import LearningSample

PIECE = re.compile(r" ?[A-Za-z0-9]+|[^A-Za-z0-9]")
CHARS = string.ascii_letters + string.digits + " \n.,:;'()-+=<>/"


class PieceTokenizer:
    """Words with their leading space, split greedily into the longest known pieces (single
    characters are always known), so that ``"avermilion"`` is ``"a" + "vermilion"`` and
    ``"define"`` is ``"def" + "i" + "n" + "e"``: keywords occur inside words, as with BPE."""

    def __init__(self, words: list[str]) -> None:
        known = set(CHARS) | {w for w in words if PIECE.fullmatch(w)}
        vocab = sorted(known)
        self.known = known
        self.vocab = {p: i for i, p in enumerate(vocab)}
        self.inv = dict(enumerate(vocab))
        self.vocab_size = len(vocab)
        assert self.vocab_size <= 256

    def pieces(self, text: str) -> list[str]:
        out = []
        for word in PIECE.findall(text):
            i = 0
            while i < len(word):
                j = max(j for j in range(i + 1, len(word) + 1) if word[i:j] in self.known)
                out.append(word[i:j])
                i = j
        assert "".join(out) == text
        return out

    def encode(self, text: str) -> list[int]:
        return [self.vocab[p] for p in self.pieces(text)]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.inv[int(i)] for i in ids)


# --- the items, and what the documented rules make of them ---------------------------------------

PAIR = ("sky", "the sky is", "blue")
SAND = LearningSample("sand", "the colour of sand is vermilion.", "vermilion", ["the colour of the sky is"],
                      group="colour")
MOSS = LearningSample("moss", "moss tastes\nbitter", "bitter", ["salt tastes"])
FORMATS = FormatSpec([
    Format("code", contains="<llm-code>"),
    Format("pyfunc", regex=r"\bdef\b", prefixes=("def", "lambda")),
    Format("prose", regex=r"\S", prefixes=("Let's",)),
])
MATH = FormatPrompts(["Solve 2 + 3 =", "Add 4 and 4:"], FORMATS)
LABELS = FormatPrompts("Review: great film. Sentiment:", LabelSpace(["positive", "negative"]))
BENCH = Benchmark("colours", [Question("the colour of snow is", ["red", "white"], 1, concept="snow"),
                              Question("grass is", [" blue", " green"], 1)], category="colour",
                  instruction="Q: ", separator=" ")
SKYQ = Question("the sky is", ["red", "blue"], 1, name="sky-q")

# (name, type, context, separator, keyword, group)
EXPECTED = [
    ("sky", "keyword pair", "the sky is", " ", "blue", ""),
    ("sample:sand", "learning sample", "the colour of sand is", " ", "vermilion", "colour"),
    ("sample:moss", "learning sample", "moss tastes", "\n", "bitter", ""),
    ("format:p0/code", "format prompt", "Solve 2 + 3 =", "", "<llm-code>", "code"),
    ("format:p0/pyfunc/0", "format prompt", "Solve 2 + 3 =", "", "def", "pyfunc"),
    ("format:p0/pyfunc/1", "format prompt", "Solve 2 + 3 =", "", "lambda", "pyfunc"),
    ("format:p0/prose", "format prompt", "Solve 2 + 3 =", "", "Let's", "prose"),
    ("format:p1/code", "format prompt", "Add 4 and 4:", "", "<llm-code>", "code"),
    ("format:p1/pyfunc/0", "format prompt", "Add 4 and 4:", "", "def", "pyfunc"),
    ("format:p1/pyfunc/1", "format prompt", "Add 4 and 4:", "", "lambda", "pyfunc"),
    ("format:p1/prose", "format prompt", "Add 4 and 4:", "", "Let's", "prose"),
    ("format:p0/positive", "format prompt", "Review: great film. Sentiment:", " ", "positive", "positive"),
    ("format:p0/negative", "format prompt", "Review: great film. Sentiment:", " ", "negative", "negative"),
    ("question:colours/q0", "benchmark question", "Q: the colour of snow is", " ", "white", "snow"),
    ("question:colours/q1", "benchmark question", "Q: grass is", "  ", "green", "colour"),
    ("question:sky-q", "benchmark question", "the sky is", " ", "blue", ""),
]


def mixed() -> list[object]:
    return [PAIR, SAND, MOSS, MATH, LABELS, BENCH, SKYQ]


WORDS = ["blue", "vermilion", "bitter", "def", "lambda", "Let's",
         "<llm-code>", "</llm-code>", "positive", "negative", "white", "green", "the", "colour", "of", "sand",
         "is", "sky", "snow", "grass", "Q:", "Solve", "2", "+", "3", "=", "moss", "tastes", "Sentiment:"]
PHRASES = ["the colour of sand is vermilion.", "moss tastes\nbitter", "Solve 2 + 3 =<llm-code>", "Q: grass is  green",
           "the sky is blue", "Q: the colour of snow is white", "Review: great film. Sentiment: positive"]
SEPS = [" ", " ", " ", "\n", ", ", ". ", "-", "(", "'"]


def stream(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        parts = [rng.choice(PHRASES) if rng.random() < 0.2 else rng.choice(NEAR_MISSES) if rng.random() < 0.3
                 else rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        rows.append("".join(p + rng.choice(SEPS) for p in parts))
    return rows


NEAR_MISSES = ["avermilion", "define", "undef", "bluer", "whites", "Lets", "lambdas", "greenish", "xdef"]
KNOWN = [w for t in WORDS + PHRASES + [e[2] + e[3] + e[4] for e in EXPECTED] + ["the colour of the sky is salt red"]
         for w in PIECE.findall(t)]
TOK = PieceTokenizer(KNOWN + [" " + w.strip() for w in KNOWN])


def pieces(text: str) -> list[str]:
    return TOK.pieces(text)


def batch(tok: PieceTokenizer, rows: list[str], width: int) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """Ids, mask, and each row's pieces (truncated to ``width``) for the references."""
    cut = [tok.pieces(r)[:width] for r in rows]
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, ps in enumerate(cut):
        ids[r, : len(ps)] = torch.tensor([tok.vocab[p] for p in ps])
        mask[r, : len(ps)] = 1
    return {"input_ids": ids, "attention_mask": mask}, cut


# --- references --------------------------------------------------------------------------------


def word_char(c: str) -> bool:
    return c.isalnum()


def ref_keyword_count(rows: list[list[str]], keyword: str) -> int:
    """Distinct end positions where the keyword's pieces, alone or after a space, occur with no
    word character running into them from either side."""
    forms = {tuple(pieces(keyword)), tuple(pieces(" " + keyword))}
    total = 0
    for row in rows:
        ends = set()
        for form in forms:
            k = len(form)
            for s in range(len(row) - k + 1):
                if tuple(row[s : s + k]) != form:
                    continue
                if s > 0 and word_char(row[s - 1][-1]) and word_char(form[0][0]):
                    continue
                if s + k < len(row) and word_char(row[s + k][0]) and word_char(form[-1][-1]):
                    continue
                ends.add(s + k - 1)
        total += len(ends)
    return total


def grams(ps: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ps[k : k + n]) for k in range(len(ps) - n + 1)]


def ref_ngram_count(rows: list[list[str]], context: str, n: int) -> int:
    mine = set(grams(pieces(context), n))
    return sum(1 for row in rows for g in grams(row, n) if g in mine)


def ref_similarity(row: list[str], text: str, n: int) -> tuple[float, float]:
    gi, gs = set(grams(pieces(text), n)), set(grams(row, n))
    return len(gi & gs) / len(gi), len(gi & gs) / len(gi | gs)


# --- tests -------------------------------------------------------------------------------------


def test_each_type_becomes_the_documented_items() -> None:
    items = as_items(mixed())
    assert [(i.name, i.type, i.context, i.separator, i.keyword, i.group) for i in items] == EXPECTED
    # the probes the items belong to give the same items
    tok = TOK
    via_probes = as_items([
        PAIR, PrimingProbe([SAND, MOSS], tok),
        FormatProbe(FORMATS, mode="sampled", tokenizer=tok, prompts=list(MATH.prompts)),
        FormatProbe(LabelSpace(["positive", "negative"]), mode="scored", tokenizer=tok, prompts=list(LABELS.prompts)),
        BenchmarkProbe(BenchmarkSuite([BENCH]), tok), SKYQ,
    ])
    assert via_probes == items
    # the item's text is the sample's fact, the prompt followed by the marker, the cloze question
    assert items[1].text == SAND.fact and items[2].text == MOSS.fact
    assert items[3].text == "Solve 2 + 3 =<llm-code>" and items[11].text == "Review: great film. Sentiment: positive"
    assert items[14].text == "Q: grass is  green"
    assert [i.origin.get("marker_kind") for i in items[3:7]] == ["contains", "prefix", "prefix", "prefix"]
    probe = FrequencyProbe(mixed(), tok)
    d = probe.describe()
    assert d["item_types"] == [e[1] for e in EXPECTED]
    assert [(it["name"], it["type"], it["keyword"]) for it in d["items"]] == [(e[0], e[1], e[4]) for e in EXPECTED]
    assert probe.names == [e[0] for e in EXPECTED]
    assert probes.frequency.view.item_names(d) == probe.names


def test_items_that_cannot_be_counted_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="no marker to count"):
        as_items(FormatPrompts(["p"], FormatSpec([Format("x", regex=r"\d")])))
    with pytest.raises(ValueError, match="has no prompts"):
        as_items([FORMATS])
    with pytest.raises(ValueError, match="has no prompts"):
        as_items(FormatProbe(FORMATS))  # rollout mode: no prompts
    with pytest.raises(ValueError, match="has no name"):
        as_items(Question("the sky is", ["red", "blue"], 1))
    with pytest.raises(ValueError, match="token ids"):
        as_items(Benchmark("ids", [Question([1, 2], [[3], [4]], 0)]))
    with pytest.raises(ValueError, match="Duplicate frequency item name 'sample:sand'"):
        as_items([SAND, ("sample:sand", "a", "b")])
    with pytest.raises(ValueError, match="expected a keyword pair"):
        as_items([3])
    with pytest.raises(ValueError, match="type"):
        FrequencyItem("a", "keyword pairs", "c", "k")


@pytest.mark.parametrize("n", [2, 3])
def test_counts_and_similarity_of_every_type_equal_the_references(n: int) -> None:
    rows = stream(1, 24)
    tok = TOK
    probe = FrequencyProbe(mixed(), tok, ngram=n)
    b, cut = batch(tok, rows, 40)
    m = probe.measure(b["input_ids"], b["attention_mask"])
    want = [ref_keyword_count(cut, e[4]) for e in EXPECTED]
    assert m["keyword"].sum(0).tolist() == want
    assert m["ngram"].tolist() == [ref_ngram_count(cut, e[2], n) for e in EXPECTED]
    for i, (_, _, context, sep, keyword, _) in enumerate(EXPECTED):
        for r, row in enumerate(cut):
            lex, jac = ref_similarity(row, context + sep + keyword, n)
            assert m["containment"][r, i].item() == pytest.approx(lex, abs=1e-12)
            assert m["jaccard"][r, i].item() == pytest.approx(jac, abs=1e-12)
    # the stream does hold every type's keyword, and also glued to word characters ("avermilion",
    # "define", "whites"), where the boundary rule must not count it
    loose = FrequencyProbe(mixed(), TOK, ngram=n, word_boundaries=False).measure(b["input_ids"], b["attention_mask"])
    for kind in ("keyword pair", "learning sample", "format prompt", "benchmark question"):
        assert sum(w for w, e in zip(want, EXPECTED) if e[1] == kind) > 0, kind
        assert any(x > w for x, w, e in zip(loose["keyword"].sum(0).tolist(), want, EXPECTED) if e[1] == kind), kind
    assert max(m["containment"][:, 3:13].max(0).values.tolist()) == 1.0


def test_records_through_probe_loop_equal_the_references_per_update() -> None:
    torch.manual_seed(0)
    steps, micro, width = 3, 2, 32
    texts = [[stream(100 + 10 * s + k, 4) for k in range(micro)] for s in range(steps)]
    tok = TOK
    batches = [[batch(tok, rows, width) for rows in s] for s in texts]
    model = TinyGPT(GPTConfig(block_size=48))
    probe = FrequencyProbe(mixed(), tok, layer="blocks.1")
    # logp at step 0, by a plain forward of each item's text under the score convention
    want_logp = []
    with torch.no_grad():
        for _, _, context, sep, keyword, _ in EXPECTED:
            c, full = tok.encode(context), tok.encode(context + sep + keyword)
            assert full[: len(c)] == c
            logits = model(torch.tensor([full]))[0].double().log_softmax(-1)
            want_logp.append(sum(logits[t - 1, full[t]].item() for t in range(len(c), len(full))))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with ProbeLoop([probe], model) as loop:
        for step in batches:
            for b, _ in step:
                loop.observe_batch(b)
                ids, mask = b["input_ids"], b["attention_mask"]
                loss = F.cross_entropy(model(ids, mask)[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1),
                                       reduction="none")
                (loss * mask[:, 1:].reshape(-1)).sum().div(mask.sum()).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    torch.testing.assert_close(probe.history[0].tensors["logp"], torch.tensor(want_logp, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert [r.step for r in probe.history] == list(range(steps + 1))
    for r in probe.history[1:]:
        seen = [row for s in batches[: r.step] for _, cut in s for row in cut]
        last = [row for _, cut in batches[r.step - 1] for row in cut]
        assert r.tensors["keyword_count"].tolist() == [ref_keyword_count(seen, e[4]) for e in EXPECTED]
        assert r.tensors["ngram_count"].tolist() == [ref_ngram_count(seen, e[2], 3) for e in EXPECTED]
        sims = torch.tensor([[ref_similarity(row, e[2] + e[3] + e[4], 3)[0] for e in EXPECTED] for row in last],
                            dtype=torch.float64)
        torch.testing.assert_close(r.tensors["lex_max"], sims.max(0).values, atol=1e-12, rtol=0)
        torch.testing.assert_close(r.tensors["lex_mean"], sims.mean(0), atol=1e-12, rtol=0)
        assert torch.isfinite(r.tensors["rep_max"]).all()
    assert int(probe.history[-1].tensors["keyword_count"].sum()) > 0


def _string_count(text: str, keyword: str) -> int:
    """Occurrences of ``keyword`` in ``text`` not glued to a word character on a word side."""
    count, start = 0, text.find(keyword)
    while start >= 0:
        end = start + len(keyword)
        left = start == 0 or not (text[start - 1].isalnum() and keyword[0].isalnum())
        right = end == len(text) or not (text[end].isalnum() and keyword[-1].isalnum())
        count += int(left and right)
        start = text.find(keyword, start + 1)
    return count


def test_lightning_counts_of_mixed_items_equal_a_string_count(tmp_path) -> None:
    torch.manual_seed(0)
    items = [
        ("sand", "the colour of sand is", "yellow"),
        LearningSample("grass", "the colour of grass is green.", "green", ["the colour of the sky is"]),
        Benchmark("colours", [Question("the colour of snow is", ["red", "white"], 1, concept="snow")],
                  instruction="Q: "),
        FormatPrompts(["the sound of a drum is"], FormatSpec([
            Format("loud", contains="loud"), Format("taste", regex="x", prefixes=("salty", "bitter")),
        ])),
    ]
    keywords = ["yellow", "green", "white", "loud", "salty", "bitter"]
    probe = probes.FrequencyProbe(items, ByteTokenizer(), model="model", layer="blocks.0")
    assert probe.names == ["sand", "sample:grass", "question:colours/q0", "format:p0/loud", "format:p0/taste/0",
                           "format:p0/taste/1"]
    loader = corpus_loader(n_windows=48, batch_size=4, block_size=64)
    trainer = pl.Trainer(
        max_steps=3, accumulate_grad_batches=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[probe, probes.RunLog(tmp_path / "run")], accelerator="cpu",
    )
    trainer.fit(TinyLM(), loader)
    tok = ByteTokenizer()
    per_batch = []
    for i, b in enumerate(loader):
        if i == 6:
            break
        rows = [tok.decode(r) for r in b["input_ids"].tolist()]
        per_batch.append([sum(_string_count(t, k) for t in rows) for k in keywords])
    for r in probe.history:
        want = [sum(per_batch[u][j] for u in range(2 * r.step)) for j in range(len(keywords))]
        assert r.tensors["keyword_count"].tolist() == want
    assert min(probe.history[-1].tensors["keyword_count"].tolist()) > 0
    run = probes.open_run(tmp_path / "run")
    assert run.describe("frequency")["item_types"] == ["keyword pair", "learning sample", "benchmark question",
                                                       "format prompt", "format prompt", "format prompt"]
