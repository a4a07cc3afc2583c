"""Mutation tests: every assertion passes on the healthy loop and fails on a broken one.

Each loop trains the tiny LM on one outlandish fact for 100 batches (one epoch), with a
KeywordProbe on the fact's keyword. Loops are trained once per module.
"""

from __future__ import annotations

import re

import lightning.pytorch as pl
import pytest

from probes import KeywordProbe
from probes.demos import ByteTokenizer
from probes.testing import (
    ExpectationFailed,
    KeywordLearned,
    ProbeExpectations,
    assert_keyword_learned,
    assert_logs_close,
    assert_probability_trend,
)
from tests.testing.loops import PAIR, fact_loader, make_loop

N_BATCHES = 100
LOOPS = ("healthy", "lr0", "frozen", "ignores_labels", "skips_steps")


def train(kind: str, callbacks=()) -> KeywordProbe:
    pl.seed_everything(0, verbose=False)
    probe = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe, *callbacks],
    )
    trainer.fit(make_loop(kind), fact_loader(N_BATCHES))
    return probe


@pytest.fixture(scope="module")
def runs() -> dict[str, KeywordProbe]:
    return {kind: train(kind) for kind in LOOPS}


def learned(probe):
    assert_keyword_learned(probe, "sand", min_prob=0.3)


def rising(probe):
    assert_probability_trend(probe, "sand", "rising", min_change=15, tolerance=1.0)


# (assertion, the broken loops it must catch)
MATRIX = [
    (learned, ["lr0", "frozen", "ignores_labels", "skips_steps"]),
    (rising, ["lr0", "frozen", "ignores_labels"]),
]


@pytest.mark.parametrize(("check", "broken"), MATRIX, ids=[c.__name__ for c, _ in MATRIX])
def test_assertion_passes_on_healthy_and_fails_on_broken(runs, check, broken):
    check(runs["healthy"])
    for kind in broken:
        with pytest.raises(AssertionError):
            check(runs[kind])


def test_failure_messages_name_metric_step_and_value(runs):
    final = runs["skips_steps"].history[-1]
    with pytest.raises(AssertionError) as e:
        learned(runs["skips_steps"])
    p = float(final.tensors["logp_seq"][0].exp())
    m = re.match(r"keyword of 'sand' not learned at step (\d+): P_seq = (\S+) < min_prob 0.3\n", str(e.value))
    assert m and int(m.group(1)) == final.step and float(m.group(2)) == pytest.approx(p, rel=1e-3)
    with pytest.raises(AssertionError, match=r"P_seq of 'sand' is not rising: net change \+0 decades"):
        rising(runs["lr0"])


def test_golden_log_regression(runs):
    assert_logs_close(train("healthy"), runs["healthy"], rtol=0, atol=0)  # training is deterministic
    with pytest.raises(AssertionError, match=r"keyword/logp_first diverges at step 1 element 'sand'"):
        assert_logs_close(runs["frozen"], runs["healthy"])


def test_expectation_fails_fast_at_the_breaking_step(probe_trainer):
    expectations = ProbeExpectations([KeywordLearned("sand", by_step=30, min_prob=1e-3)])
    probe = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    trainer = probe_trainer([probe, expectations], max_steps=N_BATCHES)
    with pytest.raises(ExpectationFailed, match=r"KeywordLearned\('sand', by_step=30.*failed at step 30"):
        trainer.fit(make_loop("lr0"), fact_loader(N_BATCHES))
    assert trainer.global_step == 31  # stopped in the batch whose pre-update reading broke it
    assert expectations.failures[0]["step"] == 30


def test_expectation_passes_on_healthy_and_warn_mode_continues(probe_trainer):
    ok = ProbeExpectations([KeywordLearned("sand", by_step=90, min_prob=0.05)])
    probe = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    probe_trainer([probe, ok], max_steps=N_BATCHES).fit(make_loop("healthy"), fact_loader(N_BATCHES))
    assert ok.failures == []
    warn = ProbeExpectations([KeywordLearned("sand", by_step=5, min_prob=0.9)], action="warn")
    probe2 = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    trainer = probe_trainer([probe2, warn], max_steps=10)
    with pytest.warns(UserWarning, match="failed at step 5"):
        trainer.fit(make_loop("lr0"), fact_loader(N_BATCHES))
    assert trainer.global_step == 10 and [f["step"] for f in warn.failures] == [5, 6, 7, 8, 9, 10]


def test_expectations_validate_arguments():
    with pytest.raises(ValueError, match="at least one expectation"):
        ProbeExpectations([])
    with pytest.raises(ValueError, match="'raise', 'stop' or 'warn', got 'explode'"):
        ProbeExpectations([KeywordLearned("a", by_step=1)], action="explode")
