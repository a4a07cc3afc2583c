"""A distribution that is almost all "other" is no evidence of a collapse (scored mode)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest

from probes import CollapseCriterion, Format, FormatProbe, FormatSpec
from probes.demos import ByteTokenizer, GPTConfig, TinyLM, corpus_loader

SPEC = FormatSpec(
    [Format("short", contains=" a", prefixes=(" a",)), Format("long", contains=" bbbbbb", prefixes=(" bbbbbb",))]
)


def _run(criterion: CollapseCriterion) -> FormatProbe:
    pl.seed_everything(0, verbose=False)
    probe = FormatProbe(
        SPEC,
        mode="scored",
        prompts=["the colour of sand is"],
        tokenizer=ByteTokenizer(),
        model="model",
        collapse=criterion,
        on_collapse="warn",
    )
    trainer = pl.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    lm = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64), lr=0.0)  # weights never move
    trainer.fit(lm, corpus_loader(n_windows=40, batch_size=8, block_size=32))
    return probe


def test_mostly_unclassified_records_do_not_count():
    probe = _run(CollapseCriterion(tau=0.9, patience=2))
    unclassified = [float(r.tensors["unclassified"]) for r in probe.history]
    shares = [float(r.tensors["dominant_share"]) for r in probe.history]
    assert min(unclassified) > 0.999  # an untrained model puts almost no mass on either prefix
    assert min(shares) > 0.9  # ...and among that sliver one format dominates
    assert not any(bool(r.tensors["collapsed"]) for r in probe.history)
    # with the guard switched off the same records are (wrongly) taken as a collapse
    with pytest.warns(UserWarning, match="Format collapse"):
        loose = _run(CollapseCriterion(tau=0.9, patience=2, min_classified=0.0))
    assert bool(loose.history[-1].tensors["collapsed"])


def test_min_classified_is_validated():
    with pytest.raises(ValueError, match=r"`min_classified` in \[0, 1\), got 1.5"):
        CollapseCriterion(min_classified=1.5)
