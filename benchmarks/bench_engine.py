"""The scoring engine against its real floor and against a competent hand-written loop.

Sets of 256 probe pairs: 32 contexts x 8 keywords of 2-4 tokens each (random token ids), contexts
of 24 and of 128 tokens, on an HF GPT-2-shaped model (4 layers, width 256, vocabulary 5,000) and
on the tiny reference GPT with the same vocabulary. Timed side by side in one run (interleaved,
medians), torch pinned to one thread:

* ``probe``: ``KeywordProbe.read`` (the LM head projected only at the positions read);
* ``probe_no_cache``: the same without the key/value cache path (``kv_cache=False``);
* ``probe_full_head``: neither (``head=None, kv_cache=False``: the engine before issue 16);
* ``loop``: what a competent user writes by hand: rows ``context + keyword[:-1]`` padded right,
  batches of 64, full ``log_softmax`` and ``gather``;
* ``floor`` (GPT-2 only: it needs a key/value cache): each distinct token forwarded once, written
  here independently of the engine: 8 contexts at a time with ``use_cache=True``, then their
  keyword tails against the cache, and the head only at the read positions.
* ``floor_no_cache`` (tiny GPT): the floor of any method without a cache: each distinct row
  ``context + keyword[:-1]`` forwarded once through the blocks (64 rows a batch, padded right),
  then the head only at the read positions.

Ratios: ``probe / floor`` (target <= 1.25 in issue 16), ``loop / probe`` (target >= 2),
``probe / floor_no_cache`` (the tiny GPT; the same 1.25 held against what is possible without a
cache) and ``full_head / probe`` (what projecting only the read positions saves).

Run: ``python benchmarks/bench_engine.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from probes import KeywordProbe
from probes.core.context import TrainingContext
from probes.demos import GPTConfig, TinyGPT

VOCAB = 5000
N_CONTEXTS, PER_CONTEXT = 32, 8

RATIOS = [
    ("gpt2_ctx24_probe_vs_floor", "GPT-2 shape, 24-token contexts: probe / unique-token floor", "<= 1.25"),
    ("gpt2_ctx128_probe_vs_floor", "GPT-2 shape, 128-token contexts: probe / unique-token floor", "<= 1.25"),
    ("gpt2_ctx128_loop_vs_probe", "GPT-2 shape, 128-token contexts: competent loop / probe", ">= 2"),
    ("tiny_ctx128_loop_vs_probe", "tiny GPT, 128-token contexts: competent loop / probe", ">= 2"),
    ("tiny_ctx128_probe_vs_floor_no_cache", "tiny GPT, 128-token contexts: probe / no-cache floor", "<= 1.25"),
    ("gpt2_ctx128_full_head_vs_probe", "GPT-2 shape, 128-token contexts: engine before issue 16 / probe", "> 1"),
    ("gpt2_three_shared_vs_costliest_alone", "GPT-2 shape: 3 probes sharing a hub / costliest alone", "<= 1.15"),
    ("tiny_ctx128_full_head_vs_probe", "tiny GPT, 128-token contexts: full logits / head at read positions", "> 1"),
]


def probe_set(context_len: int, seed: int = 0) -> list[tuple[str, list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for c in range(N_CONTEXTS):
        context = torch.randint(1, VOCAB, (context_len,), generator=g).tolist()
        for k in range(PER_CONTEXT):
            n = int(torch.randint(2, 5, (1,), generator=g))
            pairs.append((f"c{c}k{k}", context, torch.randint(1, VOCAB, (n,), generator=g).tolist()))
    return pairs


def _rows_padded_right(chunk: list[Any]) -> torch.Tensor:
    """The rows ``context + keyword[:-1]`` of ``chunk``, padded right with 0 to one width."""
    rows = [ctx + kw[:-1] for _, ctx, kw in chunk]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids


def competent_loop(forward: Callable[[torch.Tensor], torch.Tensor], pairs: list[Any], batch: int = 64) -> torch.Tensor:
    out = torch.empty(len(pairs), dtype=torch.float64)
    with torch.no_grad():
        for b0 in range(0, len(pairs), batch):
            chunk = pairs[b0 : b0 + batch]
            ids = _rows_padded_right(chunk)
            logp = torch.log_softmax(forward(ids).float(), dim=-1)
            for i, (_, ctx, kw) in enumerate(chunk):
                pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(kw))
                out[b0 + i] = logp[i, pos, torch.tensor(kw)].double().sum()
    return out


def unique_token_floor(gpt2: Any, pairs: list[Any], per_batch: int = 8) -> torch.Tensor:
    """Each distinct token once: ``per_batch`` contexts at a time with a cache, then their tails
    against it; the head only at read positions (contexts are of equal length in these sets, tails
    padded right)."""
    out = torch.empty(len(pairs), dtype=torch.float64)
    step = per_batch * PER_CONTEXT
    for b0 in range(0, len(pairs), step):
        out[b0 : b0 + step] = _floor_batch(gpt2, pairs[b0 : b0 + step])
    return out


def no_cache_floor(tiny: TinyGPT, pairs: list[Any], batch: int = 64) -> torch.Tensor:
    """Without a cache: each distinct row ``context + keyword[:-1]`` through the blocks once (rows
    padded right, so causal attention never sees the padding), the head only at the read positions."""
    out = torch.empty(len(pairs), dtype=torch.float64)
    with torch.no_grad():
        for b0 in range(0, len(pairs), batch):
            chunk = pairs[b0 : b0 + batch]
            ids = _rows_padded_right(chunk)
            x = tiny.tok(ids) + tiny.pos(torch.arange(ids.shape[1]))
            for block in tiny.blocks:
                x = block(x, None)
            r_idx = torch.tensor([i for i, (_, _, kw) in enumerate(chunk) for _ in kw])
            p_idx = torch.tensor([len(ctx) - 1 + j for _, ctx, kw in chunk for j in range(len(kw))])
            logp = torch.log_softmax(tiny.head(tiny.ln_f(x[r_idx, p_idx])).float(), dim=-1)
            tok = torch.tensor([t for _, _, kw in chunk for t in kw])
            picked = logp[torch.arange(len(tok)), tok].double()
            k = 0
            for i, (_, _, kw) in enumerate(chunk):
                out[b0 + i] = picked[k : k + len(kw)].sum()
                k += len(kw)
    return out


def _floor_batch(gpt2: Any, pairs: list[Any]) -> torch.Tensor:
    contexts = [pairs[c * PER_CONTEXT][1] for c in range(len(pairs) // PER_CONTEXT)]
    out = torch.empty(len(pairs), dtype=torch.float64)
    with torch.no_grad():
        body = gpt2.transformer(torch.tensor(contexts), use_cache=True)
        last = gpt2.lm_head(body.last_hidden_state[:, -1])  # [C, V]: the first keyword token
        cache = body.cache if getattr(body, "cache", None) is not None else body.past_key_values
        cache.batch_repeat_interleave(PER_CONTEXT)
        tails = [kw[:-1] for _, _, kw in pairs]
        width = max(map(len, tails))
        ids = torch.zeros(len(pairs), width, dtype=torch.long)
        for i, t in enumerate(tails):
            ids[i, : len(t)] = torch.tensor(t)
        hidden = gpt2.transformer(ids, cache=cache, use_cache=False).last_hidden_state
        rows = torch.tensor([i for i, t in enumerate(tails) for _ in t])
        cols = torch.tensor([j for t in tails for j in range(len(t))])
        rest = torch.log_softmax(gpt2.lm_head(hidden[rows, cols]).float(), dim=-1)  # read positions only
        first = torch.log_softmax(last.float(), dim=-1)
        k = 0
        for i, (_, _, kw) in enumerate(pairs):
            total = first[i // PER_CONTEXT, kw[0]].double()
            for tok in kw[1:]:
                total = total + rest[k, tok].double()
                k += 1
            out[i] = total
    return out


def three_probes(model: torch.nn.Module, reps: int) -> dict[str, float]:
    """Keyword + Priming + scored Format on the same 32 contexts (text of 128 bytes, the byte ids
    are in the vocabulary): their three reads through one shared hub against each one alone."""
    from probes import FormatProbe, LearningSample, PrimingProbe
    from probes.core.hub import Hubs
    from probes.demos import ByteTokenizer
    from probes.formats import Format, FormatSpec

    g = torch.Generator().manual_seed(1)
    letters = "abcdefghijklmnopqrstuvwxyz "
    contexts = ["".join(letters[int(i)] for i in torch.randint(0, 27, (128,), generator=g)) for _ in range(N_CONTEXTS)]
    words = ["blue", "green", "yellow", "white", "black", "red", "grey", "pink"]
    tok = ByteTokenizer()
    spec = FormatSpec([Format(w, contains=w, prefixes=(" " + w,)) for w in words[:4]])

    def build() -> list[Any]:
        return [
            KeywordProbe([(f"c{c}{w}", ctx, w) for c, ctx in enumerate(contexts) for w in words], tok),
            PrimingProbe([LearningSample(f"s{k}", f"{contexts[k]} {words[k % 8]}", words[k % 8],
                                         [c for c in contexts[:9] if c != contexts[k]][:8])
                          for k in range(8)], tok, baseline=0, count_exposures=False),
            FormatProbe(spec, mode="scored", prompts=contexts, tokenizer=tok, collapse=None),
        ]

    shared, alone = build(), build()
    hubs = Hubs()
    for p in shared:
        p.attach(TrainingContext(model, step=0, hubs=hubs))
    for p in (*shared, *alone):
        p.check(TrainingContext(model, step=0, hubs=hubs if p in shared else Hubs()))
    step = [0]

    def all_shared() -> None:
        step[0] += 1
        ctx = TrainingContext(model, step=step[0], hubs=hubs)
        for p in shared:
            p.read_scores(ctx)

    fns: dict[str, Callable[[], Any]] = {"shared": all_shared}
    for p in alone:
        fns[p.source] = lambda p=p: p.read(model)
    t = _median_times(fns, reps)
    costliest = max(t[p.source] for p in alone)
    return {"three_shared_ms": t["shared"] * 1e3, "costliest_alone_ms": costliest * 1e3,
            "three_shared_vs_costliest_alone": t["shared"] / costliest}


def _median_times(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(reps):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))  # alternate to cancel drift
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v[1:] if len(v) > 2 else v) for k, v in times.items()}


def _models() -> dict[str, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=VOCAB, n_positions=256)).eval()
    tiny = TinyGPT(GPTConfig(vocab_size=VOCAB, block_size=256, n_layer=4, n_embd=256, n_head=4)).eval()
    return {"gpt2": gpt2, "tiny": tiny}


def run(quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(1)
    reps = 3 if quick else 7
    out: dict[str, float] = {"threads": 1.0}
    for model_name, model in _models().items():
        forward = (lambda m: (lambda ids: m(ids).logits))(model) if model_name == "gpt2" else model
        for ctx_len in (24, 128):
            pairs = probe_set(ctx_len)
            items = [(n, c, k) for n, c, k in pairs]
            probe = KeywordProbe(items)  # the defaults: token_budget="auto", head="auto", kv_cache=True
            no_cache = KeywordProbe(items, kv_cache=False)
            full = KeywordProbe(items, token_budget=16384, head=None, kv_cache=False)  # the engine before #16
            for p in (probe, no_cache, full):
                p.check(TrainingContext(model, step=0))  # what a training loop runs before step 1
            fns: dict[str, Callable[[], Any]] = {
                "probe": lambda p=probe, m=model: p.read(m),
                "probe_no_cache": lambda p=no_cache, m=model: p.read(m),
                "probe_full_head": lambda p=full, m=model: p.read(m),
                "loop": lambda f=forward, ps=pairs: competent_loop(f, ps),
            }
            if model_name == "gpt2":
                fns["floor"] = lambda m=model, ps=pairs: unique_token_floor(m, ps)
            else:
                fns["floor_no_cache"] = lambda m=model, ps=pairs: no_cache_floor(m, ps)
            # exactness first: every path gives the same chained log-probabilities
            ref = competent_loop(forward, pairs)
            assert torch.allclose(probe.read(model).logp_seq.cpu(), ref, atol=1e-3), "probe differs from the loop"
            if "floor" in fns:
                assert torch.allclose(unique_token_floor(model, pairs), ref, atol=1e-3), "floor differs from the loop"
            if "floor_no_cache" in fns:
                assert torch.allclose(no_cache_floor(model, pairs), ref, atol=1e-3), "no-cache floor differs"
            t = _median_times(fns, reps)
            key = f"{model_name}_ctx{ctx_len}"
            for name, value in t.items():
                out[f"{key}_{name}_ms"] = value * 1e3
            if "floor" in t:
                out[f"{key}_probe_vs_floor"] = t["probe"] / t["floor"]
            if "floor_no_cache" in t:
                out[f"{key}_probe_vs_floor_no_cache"] = t["probe"] / t["floor_no_cache"]
            out[f"{key}_loop_vs_probe"] = t["loop"] / t["probe"]
            out[f"{key}_full_head_vs_probe"] = t["probe_full_head"] / t["probe"]
            out[f"{key}_no_cache_vs_probe"] = t["probe_no_cache"] / t["probe"]
    out.update({f"gpt2_{k}": v for k, v in three_probes(_models()["gpt2"], reps).items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    result = run(quick=args.quick)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:10.3f}")
    for key, what, target in RATIOS:
        print(f"{what:<70} {result[key]:8.2f}  (target {target})")


if __name__ == "__main__":
    main()
