"""Mutation tests: every assertion passes on the healthy loop and fails on a broken one.

Each loop trains the tiny LM on one outlandish fact for 100 batches (one epoch), with a
KeywordProbe on the fact's keyword. Loops are trained once per module.
"""

from __future__ import annotations

import re
import warnings

import lightning.pytorch as pl
import pytest

from probes import KeywordProbe
from probes.demos import ByteTokenizer
from probes.testing import (
    ExpectationFailed,
    KeywordLearned,
    PrimingBelow,
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


HEALTHY_EXPECTATION = KeywordLearned("sand", by_step=90, min_prob=0.05)


@pytest.fixture(scope="module")
def runs() -> dict[str, KeywordProbe]:
    """Every loop trained once for the module; the healthy one also carries a ProbeExpectations
    (checked by test_expectation_passes_on_healthy_and_warn_mode_continues), so it is not trained twice."""
    out = {}
    for kind in LOOPS:
        extra = [ProbeExpectations([HEALTHY_EXPECTATION])] if kind == "healthy" else []
        out[kind] = train(kind, extra)
        if extra:
            out["healthy/expectations"] = extra[0]  # type: ignore[assignment]
    return out


def learned(probe, min_prob=0.3):
    assert_keyword_learned(probe, "sand", min_prob=min_prob)


def rising(probe, min_change=15):
    assert_probability_trend(probe, "sand", "rising", min_change=min_change, tolerance=2.0)


# (assertion, the limits it is checked with, the broken loops it must catch). Not one limit tuned
# between two observed values: every limit of a wide band must separate the healthy loop from
# each broken one (a probability from 1e-2 to 0.3; a rise from 5 to 20 decades, with a setback
# tolerance of 2 decades, twice the healthy loop's noise).
MATRIX = [
    (learned, (0.01, 0.1, 0.3), ["lr0", "frozen", "ignores_labels", "skips_steps"]),
    (rising, (5, 10, 15, 20), ["lr0", "frozen", "ignores_labels"]),
]


@pytest.mark.parametrize(("check", "limits", "broken"), MATRIX, ids=[c.__name__ for c, _, _ in MATRIX])
def test_assertion_passes_on_healthy_and_fails_on_broken(runs, check, limits, broken):
    for limit in limits:
        check(runs["healthy"], limit)
        for kind in broken:
            with pytest.raises(AssertionError):
                check(runs[kind], limit)


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


def test_expectation_passes_on_healthy_and_warn_mode_continues(runs, probe_trainer):
    ok = runs["healthy/expectations"]
    assert ok.failures == [] and ok.expectations == [HEALTHY_EXPECTATION]
    # and the expectation's claim holds on the healthy history, read independently
    at_90 = next(r for r in runs["healthy"].history if r.step == 90)
    assert float(at_90.tensors["logp_seq"][0].exp()) >= 0.05
    warn = ProbeExpectations([KeywordLearned("sand", by_step=5, min_prob=0.9)], action="warn")
    probe2 = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    trainer = probe_trainer([probe2, warn], max_steps=10)
    with pytest.warns(UserWarning, match="failed at step 5"):
        trainer.fit(make_loop("lr0"), fact_loader(N_BATCHES))
    assert trainer.global_step == 10 and [f["step"] for f in warn.failures] == [5, 6, 7, 8, 9, 10]


def test_stop_action_ends_training_at_the_breaking_step(probe_trainer):
    stop = ProbeExpectations([KeywordLearned("sand", by_step=30, min_prob=1e-3)], action="stop")
    probe = KeywordProbe([PAIR], ByteTokenizer(), model="model")
    trainer = probe_trainer([probe, stop], max_steps=N_BATCHES)
    with pytest.warns(UserWarning, match=r"failed at step 30:[\s\S]*Stopping training"):
        trainer.fit(make_loop("lr0"), fact_loader(N_BATCHES))  # no exception: the trainer stops
    assert trainer.global_step == 31 and trainer.should_stop
    assert [f["step"] for f in stop.failures][:1] == [30]
    assert probe.history[-1].step == 31  # the final reading of the stopped run


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
        expectations = ProbeExpectations([PrimingBelow(PRIMING_LIMITS[2])], action="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _short_trainer([probe, expectations], 40).fit(copy.deepcopy(pre), loader)
        out[kind] = probe
        out[f"{kind}/expectations"] = expectations
    return out


# Chained byte probabilities near 1e-26 drift by decades under ordinary training, while a leaked
# fact raises them by far more. The limits below are not tuned to sit between two observed
# values: every limit in a band of six decades must separate the two loops, so the assertion
# discriminates with a wide margin on either side.
PRIMING_LIMITS = (1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12)


def test_no_priming_passes_healthy_and_fails_when_the_fact_leaks(priming_runs):
    from probes.testing import assert_no_priming

    for limit in PRIMING_LIMITS:
        assert_no_priming(priming_runs["healthy"], max_factor=limit)
        with pytest.raises(AssertionError, match=r"s_prime of sample 'pearl' is .* at step \d+, above the limit"):
            assert_no_priming(priming_runs["leaks_fact"], max_factor=limit)


def test_priming_below_passes_healthy_and_fails_when_the_fact_leaks(priming_runs):
    from probes.testing import assert_priming_below

    healthy, leaked = priming_runs["healthy"], priming_runs["leaks_fact"]
    for limit in PRIMING_LIMITS:
        assert_priming_below(healthy, limit)
        assert_priming_below(healthy, limit, samples=["pearl"])
        with pytest.raises(AssertionError) as e:
            assert_priming_below(leaked, limit, samples=["pearl"])
        # the message names the first reading over the limit: find it in the probe's own history
        first = next(
            r for r in leaked.history if bool(r.tensors["has_baseline"][0]) and float(r.tensors["s_prime"][0]) > limit
        )
        assert f"at step {first.step}," in str(e.value)
    # readings up to the baseline step carry no priming yet: the limit is not checked there
    baseline_step = next(r.step for r in leaked.history if bool(r.tensors["has_baseline"][0]))
    assert_priming_below(leaked, 1.0 + 1e-9, after_step=leaked.history[-1].step)  # nothing after the last
    with pytest.raises(AssertionError):
        assert_priming_below(leaked, PRIMING_LIMITS[0], after_step=baseline_step)


def test_priming_below_expectation_checked_live(priming_runs):
    """PrimingBelow inside ProbeExpectations (warn mode, attached to the same runs) fails at the
    first reading over the limit, and never on the healthy loop."""
    limit = PRIMING_LIMITS[2]
    assert priming_runs["healthy/expectations"].failures == []
    failures = priming_runs["leaks_fact/expectations"].failures
    leaked = priming_runs["leaks_fact"]
    over = [
        r.step for r in leaked.history if bool(r.tensors["has_baseline"][0]) and float(r.tensors["s_prime"][0]) > limit
    ]
    assert over and [f["step"] for f in failures] == over
    assert failures[0]["expectation"] == f"PrimingBelow(s_prime <= {limit})"


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

    # a limit fixed in advance, not between two observed values: the collapse threshold tau = 0.95
    # of the demo's detector; and the probe's own detector (default criterion) must agree
    assert_no_format_collapse(rl_runs["shuffled"], max_dominant_share=0.95)
    with pytest.raises(AssertionError, match=r"format distribution collapsed at step \d+: 'equals' holds"):
        assert_no_format_collapse(rl_runs["correct"], max_dominant_share=0.95)
    assert not any(bool(r.tensors["collapsed"]) for r in rl_runs["shuffled"].history)
    assert any(bool(r.tensors["collapsed"]) for r in rl_runs["correct"].history)
