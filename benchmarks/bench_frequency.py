"""FrequencyProbe overhead on training: 256 items, a GPT-2-shaped TinyGPT, one torch thread.

Two identical models train side by side on the same batches, steps interleaved (bare, probed,
bare, probed, ...); each ratio is the total probed step time divided by the total bare step time
over the same steps, minus 1 (the overhead as a share of a step; totals, not medians, so a
periodic item-state refresh is amortized into the ratio). A step is forward, backward and AdamW on a
batch of 8 x 256 byte tokens (4 layers, width 256).

* ``counting_lexical``: keyword counts, context n-gram counts, lexical similarity (no layer);
* ``with_rep_every_step``: plus the forward hook and the items' hidden-state pass every step;
* ``with_rep_every_16``: the items' states refreshed every 16 steps (``states_every=16``);
* ``full_read_every_step``: ``with_rep_every_16`` plus a log-probability reading every step
  (the scoring pass that any scoring probe costs; see ``bench_keyword``).

The log-probability reading is off (read at step 0 only) except in the last row. Target: the
measurement without readings under 10% of a step.

``--quick`` times 6 steps of the first and third rows only; no item-state refresh falls among
them, so it is a smoke test, not a measurement.

Run: ``python benchmarks/bench_frequency.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from probes.demos.frequency_study import _BACKGROUND, study_items
from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.probe import FrequencyProbe
from probes.integrations.loop import ProbeLoop

N_ITEMS = 256
RATIOS = [
    ("counting_lexical", "FrequencyProbe counting + lexical similarity / bare step - 1", "< 0.10"),
    ("with_rep_every_step", "+ representational (item states every step) / bare step - 1", "reported (NaN quick)"),
    ("with_rep_every_16", "+ representational (item states every 16 steps) / bare step - 1", "< 0.10"),
    ("full_read_every_step", "+ log-probability reading every step / bare step - 1", "reported (NaN quick)"),
]
CONFIGS: dict[str, dict[str, Any]] = {
    "counting_lexical": {"layer": None},
    "with_rep_every_step": {"layer": "blocks.1", "states_every": 1},
    "with_rep_every_16": {"layer": "blocks.1", "states_every": 16},
    "full_read_every_step": {"layer": "blocks.1", "states_every": 16, "every_n_steps": 1},
}


def _items() -> list[tuple[str, str, str]]:
    return [(it.name, it.context, it.keyword) for it in study_items(0, N_ITEMS // 4)]


def _batches(n: int, tok: ByteTokenizer, items: list[tuple[str, str, str]]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        rows = []
        for _ in range(8):
            words = [_BACKGROUND[int(i)] for i in torch.randint(len(_BACKGROUND), (60,), generator=g)]
            k = int(torch.randint(len(items), (1,), generator=g))
            text = (" ".join(words[:20]) + f" {items[k][1]} {items[k][2]} " + " ".join(words[20:]))[:256]
            rows.append(tok.encode(text.ljust(256)))
        out.append(torch.tensor(rows))
    return out


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, loop: Any = None) -> float:
    t0 = time.perf_counter()
    if loop is not None:
        loop.observe_batch({"input_ids": ids})
    F.cross_entropy(model(ids)[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1)).backward()
    if loop is not None:
        loop.optimizer_step(opt)
    else:
        opt.step()
    opt.zero_grad()
    return time.perf_counter() - t0


def measure(name: str, steps: int, warm: int = 2) -> dict[str, float]:
    """Mean bare and probed step seconds for one configuration, interleaved."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=256, block_size=256, n_layer=4, n_embd=256, n_head=4)
    bare, probed = TinyGPT(cfg), TinyGPT(cfg)
    probed.load_state_dict(bare.state_dict())
    opt_b = torch.optim.AdamW(bare.parameters(), lr=1e-3)
    opt_p = torch.optim.AdamW(probed.parameters(), lr=1e-3)
    tok = ByteTokenizer()
    items = _items()
    options = dict(CONFIGS[name])
    every = options.pop("every_n_steps", 10**9)
    probe = FrequencyProbe(items, tok, every_n_steps=every, log_scalars=False, **options)
    batches = _batches(steps, tok, items)
    tb, tp = [], []
    with ProbeLoop([probe], probed) as loop:
        for i, ids in enumerate(batches):
            b, p = _step(bare, opt_b, ids), _step(probed, opt_p, ids, loop)
            if i >= warm:
                tb.append(b)
                tp.append(p)
    b, p = statistics.fmean(tb), statistics.fmean(tp)
    return {"bare_s": b, "probed_s": p, "overhead": p / b - 1.0}


def run(quick: bool = False) -> dict[str, float]:
    torch.set_num_threads(1)
    steps = 6 if quick else 32  # with_rep_every_16 refreshes at steps 0, 16 (and 32): timed from step 2
    out: dict[str, float] = {"items": N_ITEMS, "steps": steps}
    for name in CONFIGS:
        if quick and name not in ("counting_lexical", "with_rep_every_16"):
            out[name] = out[f"{name}_bare_s"] = out[f"{name}_probed_s"] = float("nan")
            continue
        m = measure(name, steps + 2)
        out[name] = m["overhead"]
        out[f"{name}_bare_s"] = m["bare_s"]
        out[f"{name}_probed_s"] = m["probed_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = run(args.quick)
    print(f"FrequencyProbe, {N_ITEMS} items, batch 8 x 256 tokens, 4 x 256 TinyGPT, 1 thread, {res['steps']} steps")
    print(f"{'configuration':<24} {'bare step ms':>13} {'probed step ms':>15} {'overhead':>9}  target")
    for key, _, target in RATIOS:
        print(f"{key:<24} {1e3 * res[f'{key}_bare_s']:>13.1f} {1e3 * res[f'{key}_probed_s']:>15.1f}"
              f" {100 * res[key]:>8.1f}%  {target}")
    print(f"time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
