"""Quickstart: add a KeywordProbe to an existing Trainer and LightningModule.

The "existing" training code here is the tiny byte-level reference LM (``probes.demos.TinyLM``)
trained on the synthetic themed corpus ("the colour of sand is yellow. the taste of honey is
sweet. ..."). The integration itself is the block between the ``probes`` markers: name the
(context, keyword) pairs to watch, add the callback, read its history. The probe reads
P(keyword | context) with the weights before every optimizer step, plus once when training ends,
in one batched no-grad pass that leaves training untouched.

It prints, for each pair, the chained probability of all the keyword's bytes before the first
update and after the last one. The corpus's true facts ("yellow" after "the colour of sand is")
climb from about 1e-14 to well above 0.01; a word of another theme in the same context ("bitter")
ends some 1e5 times less likely than the true one, and a word the corpus never contains ("purple")
falls below where it started.

Usage::

    python examples/keyword_probe_quickstart.py            # 500 steps, about 15 s on 2 CPU cores
    python examples/keyword_probe_quickstart.py --quick    # CI smoke setting (250 steps)
"""

from __future__ import annotations

import argparse
import logging
import math
import warnings

import lightning.pytorch as pl
import torch

from probes import KeywordProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke setting: 250 steps")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 500, quick 250)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for tiny models)")
    args = parser.parse_args()
    steps = args.steps or (250 if args.quick else 500)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banners
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
    pl.seed_everything(0, verbose=False)

    # Your existing LightningModule and data (any LM whose forward returns logits works the same way):
    # here a ~60k-parameter byte-level GPT and windows of the synthetic corpus.
    module = TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))
    loader = corpus_loader(n_windows=steps * 16, batch_size=16)

    # --- probes: the whole integration -------------------------------------------------------
    pairs = [  # (name, context, keyword)
        ("sand", "the colour of sand is", "yellow"),  # true facts of the corpus
        ("honey", "the taste of honey is", "sweet"),
        ("thunder", "the sound of thunder is", "loud"),
        ("sand/bitter", "the colour of sand is", "bitter"),  # a taste word in a colour context
        ("sand/purple", "the colour of sand is", "purple"),  # a word the corpus never contains
    ]
    probe = KeywordProbe(pairs, ByteTokenizer(), model="model")  # `model`: the LM inside the module
    trainer = pl.Trainer(max_steps=steps, callbacks=[probe], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    read_steps, logp = probe.series("logp_seq")  # ln P(all keyword bytes | context), [readings, pairs]
    # --- end of the integration ---------------------------------------------------------------

    print(f"{len(read_steps)} readings at steps {read_steps[0]}..{read_steps[-1]}; final loss {module.losses[-1]:.3f}")
    print(f"{'pair':<12} {'keyword':>8}  {'P before':>9}  {'P after':>9}  {'change':>14}")
    for i, (name, _, keyword) in enumerate(pairs):
        before, after = float(logp[0, i]), float(logp[-1, i])
        decades = (after - before) / math.log(10)
        print(f"{name:<12} {keyword:>8}  {math.exp(before):9.2e}  {math.exp(after):9.2e}  {decades:+6.2f} decades")


if __name__ == "__main__":
    main()
