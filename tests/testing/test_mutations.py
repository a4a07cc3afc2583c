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


# --- priming and format collapse ---------------------------------------------------------------


def _short_trainer(callbacks, steps):
    return pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


@pytest.fixture(scope="module")
def priming_runs():
    """A pretrained tiny LM fine-tuned on the corpus, without (healthy) and with (broken: the
    loader leaks an outlandish fact into 20 minibatches) the fact."""
    import copy

    from probes import InjectedLoader, LearningSample, PrimingProbe
    from probes.demos import GPTConfig, TinyLM, corpus_loader

    tok = ByteTokenizer()
    fact = LearningSample(
        "pearl",
        "the colour of a pearl is vermilion",
        "vermilion",
        ["the colour of the sky is", "the colour of sand is", "the colour of snow is"],
    )
    pl.seed_everything(0, verbose=False)
    pre = TinyLM(GPTConfig(n_layer=2, n_embd=48, n_head=4, block_size=64))
    _short_trainer([], 300).fit(pre, corpus_loader(n_windows=16 * 300, batch_size=16, block_size=48))
    out = {}
    for kind in ("healthy", "leaks_fact"):
        pl.seed_everything(1, verbose=False)
        loader = corpus_loader(n_windows=16 * 40, batch_size=16, block_size=48, seed=1)
        if kind == "leaks_fact":
            loader = InjectedLoader(loader, [fact], tok, presentations=20, start=10)
        probe = PrimingProbe([fact], tok, model="model", baseline=10)
        _short_trainer([probe], 40).fit(copy.deepcopy(pre), loader)
        out[kind] = probe
    return out


def test_no_priming_passes_healthy_and_fails_when_the_fact_leaks(priming_runs):
    from probes.testing import assert_no_priming

    # chained byte probabilities near 1e-26 drift by decades under ordinary training; the leaked
    # fact raises them by far more (observed: healthy S_prime ~1.7e4, leaked ~2.5e18)
    assert_no_priming(priming_runs["healthy"], max_factor=1e8)
    with pytest.raises(
        AssertionError, match=r"s_prime of sample 'pearl' is .* at step \d+, above the limit 1.000e\+08"
    ):
        assert_no_priming(priming_runs["leaks_fact"], max_factor=1e8)


@pytest.fixture(scope="module")
def rl_runs():
    """RL on the two-format arithmetic policy: rewards shuffled within groups (healthy: no signal
    towards a format) and the correctness reward that drives the collapse (broken)."""
    from probes import FormatProbe
    from probes.demos import ARITHMETIC_FORMATS, ArithmeticTask, FormatRL, pretrain_policy

    task = ArithmeticTask()
    out = {}
    for reward in ("shuffled", "correct"):
        pl.seed_everything(0, verbose=False)
        module = FormatRL(pretrain_policy(task, steps=150, seed=0), task, reward=reward, lr=5e-4, seed=0)
        probe = FormatProbe(
            ARITHMETIC_FORMATS,
            mode="scored",
            name="format",
            prompts=task.prompts,
            tokenizer=ByteTokenizer(),
            model="model",
        )
        _short_trainer([probe], 40).fit(module, module.prompts_loader(40, 8, seed=0))
        out[reward] = probe
    return out


def test_no_format_collapse_passes_healthy_and_fails_on_collapsing_reward(rl_runs):
    from probes.testing import assert_no_format_collapse

    # observed minimum exact entropy: shuffled 0.50 bits, correctness reward 0.19 bits
    assert_no_format_collapse(rl_runs["shuffled"], min_entropy_bits=0.35)
    with pytest.raises(AssertionError, match=r"format distribution collapsed at step \d+: 'equals' holds"):
        assert_no_format_collapse(rl_runs["correct"], min_entropy_bits=0.35)
