"""The one score convention, checked against a reference written from scratch for this test.

The reference scores the text-level continuation ``" keyword"`` on the context exactly as written,
one pair at a time, with one unpadded forward and a full float64 softmax. Its token split never
uses the engine: for tokenizers with character offsets a token belongs to the continuation iff it
ends after the context's last character; for the byte-level tokenizers the ids are the bytes.

Four tokenizer/model pairs: the tiny byte-level GPT; an HF GPT-2 with a byte-level BPE trained
here, where the space before some keywords is a lone token and merged into others; a
SentencePiece-style Unigram tokenizer ("▁" word markers); and a tokenizer that adds BOS and EOS on
every encode. Through KeywordProbe, PrimingProbe (S_mem and S_prime, chained and first-token),
FormatProbe (scored label space) and BenchmarkProbe.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from probes import BenchmarkProbe, FormatProbe, KeywordProbe, LearningSample, PrimingProbe
from probes.choice.spec import Benchmark
from probes.core.context import TrainingContext
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyGPT, make_corpus
from probes.formats.spec import LabelSpace
from tests.reference import brute_force_pair

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CONTEXTS = [t.context(s) for t in THEMES for s in list(t.facts)[:2]]
# merged " yellow" / " sweet" and rare words whose space the BPE below leaves as a lone token
KEYWORDS = ["yellow", "sweet", "vermilion", "Zyx", "ωmega"]
BOS, EOS = 256, 257


class BosEosTokenizer:
    """Bytes, with a BOS before and an EOS after every encoding (as some HF tokenizers do)."""

    def __call__(self, text: str) -> list[int]:
        return [BOS, *text.encode("utf-8"), EOS]


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return other.eval()


@pytest.fixture(scope="module")
def setups():
    """name -> (tokenizer for the probes, model, reference split (context, continuation) -> ids)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = make_corpus(600, seed=3)
    out = {}

    torch.manual_seed(0)
    byte_model = TinyGPT(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64)).eval()
    out["byte"] = (ByteTokenizer(), byte_model, lambda c, k: (list(c.encode()), list(k.encode())))

    torch.manual_seed(1)
    bosz = TinyGPT(GPTConfig(vocab_size=258, n_layer=2, n_embd=48, n_head=4, block_size=64)).eval()
    out["bos_eos"] = (BosEosTokenizer(), bosz, lambda c, k: ([BOS, *c.encode()], list(k.encode())))

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        [corpus],
        trainer=trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    uni = Tokenizer(models.Unigram())
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.decoder = decoders.Metaspace()
    uni.train_from_iterator(
        [corpus, "Zyx ωmega vermilion"], trainer=trainers.UnigramTrainer(vocab_size=300, unk_token="<unk>",
                                                                         special_tokens=["<unk>"])
    )
    for name, tok, seed in (("bpe", bpe, 2), ("unigram", uni, 3)):
        cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2)
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(cfg).eval()

        def split(context: str, continuation: str, tok=tok) -> tuple[list[int], list[int]]:
            enc = tok.encode(context + continuation, add_special_tokens=False)
            ctx = [i for i, (_, end) in zip(enc.ids, enc.offsets) if end <= len(context)]
            cont = [i for i, (_, end) in zip(enc.ids, enc.offsets) if end > len(context)]
            return ctx, cont

        out[name] = (tok, model, split)
    return out


def _logits_fn(model):
    return (lambda ids: model(ids).logits) if isinstance(model, transformers.PreTrainedModel) else model


def _reference(setup, context: str, continuation: str) -> dict[str, float]:
    _, model, split = setup
    ctx, cont = split(context, continuation)
    return brute_force_pair(_logits_fn(model), ctx, cont)


KINDS = ["byte", "bos_eos", "bpe", "unigram"]


def test_bpe_has_lone_and_merged_spaces(setups) -> None:
    bpe = setups["bpe"][0]
    context = CONTEXTS[0]
    firsts = {}
    for kw in KEYWORDS:
        _, cont = setups["bpe"][2](context, " " + kw)
        firsts[kw] = bpe.id_to_token(cont[0])
    assert firsts["yellow"].startswith("Ġ") and len(firsts["yellow"]) > 1  # merged
    lone = [kw for kw, tok in firsts.items() if tok == "Ġ"]
    assert lone, firsts  # at least one keyword whose space is a token of its own


@pytest.mark.parametrize("kind", KINDS)
def test_keyword_probe_scores_the_separator_with_the_keyword(setups, kind) -> None:
    tok, model, split = setups[kind]
    pairs = [(f"{i}:{kw}", c, kw) for i, c in enumerate(CONTEXTS) for kw in KEYWORDS]
    probe = KeywordProbe(pairs, tok, token_budget=256)
    scores = probe.read(model)
    for i, (_, context, kw) in enumerate(pairs):
        ref = _reference(setups[kind], context, " " + kw)
        assert list(probe.items[i].target) == split(context, " " + kw)[1]
        assert scores.p_first[i].item() == pytest.approx(ref["p_first"], rel=1e-5, abs=1e-7)
        assert scores.logp_first[i].item() == pytest.approx(ref["logp_first"], abs=1e-4)
        assert scores.logp_seq[i].item() == pytest.approx(ref["logp_seq"], abs=1e-4)
        assert int(scores.rank[i]) == ref["rank"]
    assert not bool(scores.nonfinite.any())




@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("score", ["seq", "first"])
def test_priming_scores_match_two_weight_versions(setups, kind, score) -> None:
    tok, model_a, _ = setups[kind]
    model_b = _perturbed(model_a, seed=11)
    samples = []
    for i, context in enumerate(CONTEXTS[:4]):
        kw = KEYWORDS[i % len(KEYWORDS) + 1]
        prefixes = [c for c in CONTEXTS if c != context][:3]
        samples.append(LearningSample(f"s{i}", f"{context} {kw}.", kw, prefixes))
    probe = PrimingProbe(samples, tok, baseline=0, score=score, count_exposures=False, token_budget=256)
    probe.take_reading(TrainingContext(model_a, step=0, final=True))
    probe.take_reading(TrainingContext(model_b, step=3, final=True))
    got = probe.latest()
    for s, sample in enumerate(samples):
        cont = " " + sample.keyword
        for mode, key in (("seq", "logp_seq"), ("first", "logp_first")):
            before = _reference(setups[kind], sample.learning_context, cont)[key]
            after = _reference((tok, model_b, setups[kind][2]), sample.learning_context, cont)[key]
            ratios = [
                _reference((tok, model_b, setups[kind][2]), p, cont)[key] - _reference(setups[kind], p, cont)[key]
                for p in sample.prefixes
            ]
            peak = max(ratios)
            log_s_prime = peak + math.log(sum(math.exp(r - peak) for r in ratios) / len(ratios))
            assert got[f"log10_s_mem_{mode}"][s].item() == pytest.approx((after - before) / math.log(10), abs=1e-4)
            assert got[f"log10_s_prime_{mode}"][s].item() == pytest.approx(log_s_prime / math.log(10), abs=1e-4)
            assert got[f"log10_p_before_{mode}"][s].item() == pytest.approx(before / math.log(10), abs=1e-4)
            if mode == score:  # the unsuffixed metrics follow `score`
                assert got["log10_s_mem"][s].item() == pytest.approx((after - before) / math.log(10), abs=1e-4)
                assert got["p_before"][s].item() == pytest.approx(math.exp(before), rel=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_scored_label_space_and_benchmark_options(setups, kind) -> None:
    tok, model, _ = setups[kind]
    labels = ["yellow", "sweet", "Zyx"]
    prompts = CONTEXTS[:3]
    fmt = FormatProbe(LabelSpace(labels), mode="scored", tokenizer=tok, prompts=prompts, token_budget=256)
    tally = fmt.read(model)
    mass = torch.zeros(len(prompts), len(labels) + 1, dtype=torch.float64)
    for i, prompt in enumerate(prompts):
        for j, lab in enumerate(labels):
            mass[i, j] = math.exp(_reference(setups[kind], prompt, " " + lab)["logp_seq"])
        mass[i, -1] = max(0.0, 1.0 - float(mass[i, :-1].sum()))
    assert tally.count.cpu().tolist() == pytest.approx(mass.mean(dim=0).tolist(), rel=1e-5, abs=1e-9)

    bench = Benchmark("colours", [(c, ["yellow", "vermilion", "ωmega"], 0) for c in prompts])
    probe = BenchmarkProbe([bench], tok, token_budget=256)
    reading = probe.read(model)
    ref = [_reference(setups[kind], c, " " + o)["logp_seq"] for c in prompts for o in ["yellow", "vermilion", "ωmega"]]
    assert reading.option_scores.cpu().tolist() == pytest.approx(ref, abs=1e-4)


def test_never_seen_keyword_below_1e40_gets_the_exact_ratio(setups) -> None:
    tok, model_a, _ = setups["byte"]
    model_b = _perturbed(model_a, seed=5)
    kw = "zqxjvkwpqzxjqvkzqxwj"  # 20 bytes after a space: P ~ 256^-21 on an untrained byte model
    sample = LearningSample("never", f"the colour of sand is {kw}", kw, ["the colour of the sky is"])
    probe = PrimingProbe([sample], tok, baseline=0, count_exposures=False)
    probe.take_reading(TrainingContext(model_a, step=0, final=True))
    probe.take_reading(TrainingContext(model_b, step=1, final=True))
    got = probe.latest()
    before = _reference(setups["byte"], "the colour of sand is", " " + kw)["logp_seq"]
    after = brute_force_pair(model_b, *setups["byte"][2]("the colour of sand is", " " + kw))["logp_seq"]
    assert before / math.log(10) < -40  # below 1e-40: a floor at 1e-30 would have capped the ratio
    assert got["p_before"].item() == pytest.approx(math.exp(before), rel=1e-4)
    assert got["log10_s_mem"].item() == pytest.approx((after - before) / math.log(10), abs=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_no_boundary_warning_when_tokens_are_the_continuation_alone(setups, kind) -> None:
    import warnings

    tok = setups[kind][0]
    samples = [LearningSample(f"s{i}", f"{c} {kw}.", kw, [x for x in CONTEXTS if x != c][:2])
               for i, (c, kw) in enumerate(zip(CONTEXTS, KEYWORDS))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a lone or merged space is the normal case: no warning
        KeywordProbe([(f"{i}:{kw}", c, kw) for i, c in enumerate(CONTEXTS) for kw in KEYWORDS], tok)
        PrimingProbe(samples, tok)


def test_boundary_warning_is_once_per_pair_with_readable_tokens() -> None:
    class Merging:
        """Bytes, except that "s b" is one token (300): it merges the context's end into the keyword."""

        def __call__(self, text: str) -> list[int]:
            out, i = [], 0
            while i < len(text):
                if text[i : i + 3] == "s b":
                    out.append(300)
                    i += 3
                else:
                    out.append(ord(text[i]))
                    i += 1
            return out

        def decode(self, ids: list[int]) -> str:
            return "".join("s b" if i == 300 else chr(i) for i in ids)

    with pytest.warns(UserWarning) as caught:
        pairs = [("m", "the sky is", "blue"), ("n", "the sea is", "blue"), ("ok", "sky", "red")]
        probe = KeywordProbe(pairs, Merging())
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2  # one per affected pair, none for 'ok'
    assert "Pair 'm'" in messages[0] and "[300:'s b', 108:'l', 117:'u', 101:'e']" in messages[0]
    assert "merges the end of the context" in messages[0]
    assert probe.items[0].target == (300, *map(ord, "lue"))  # the merged token goes to the keyword
    assert probe.items[0].context == tuple(map(ord, "the sky i"))


def test_context_is_used_as_written_and_a_doubled_separator_is_flagged() -> None:
    tok = ByteTokenizer()
    with pytest.warns(UserWarning, match=r"Pair 'sp'.*ends with whitespace.*separator=''"):
        probe = KeywordProbe([("sp", "the sky is ", "blue")], tok)
    assert probe.items[0].context == tuple(b"the sky is ")  # exactly as written, trailing space included
    assert probe.items[0].target == tuple(b" blue")
    plain = KeywordProbe([("sp", "the sky is ", "blue")], tok, separator="")  # the user's own spacing
    assert plain.items[0].context == tuple(b"the sky is ") and plain.items[0].target == tuple(b"blue")
