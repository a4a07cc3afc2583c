"""The attribution against numpy least squares and residual correlations; the kind's views on a
real run log (summary, panel, plot, replay, assertion, `probes summary`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from rich.console import Console

from probes.analysis import attribute, attribution_from_run, frequency_fit
from probes.console import Dashboard
from probes.core import kinds
from probes.demos.tiny_gpt import GPTConfig, TinyGPT
from probes.demos.tokenizer import ByteTokenizer
from probes.frequency.probe import FrequencyProbe
from probes.runlog import open_run
from tests.frequency.test_frequency_measures import ITEMS, _batches, _train


def _z(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def _residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    X = np.stack([np.ones_like(b), b], axis=1)
    return a - X @ np.linalg.lstsq(X, a, rcond=None)[0]


def test_attribution_equals_least_squares_and_residual_correlations() -> None:
    rng = np.random.default_rng(0)
    n = 40
    freq = rng.integers(0, 500, n).astype(float)
    sim = rng.gamma(2.0, 3.0, n) + 0.01 * freq
    y = 0.8 * np.log1p(freq) + 0.3 * sim + rng.normal(0, 1.0, n)
    a = attribute(y, freq, sim, n_boot=500, seed=1)
    f = np.log1p(freq)
    beta = np.linalg.lstsq(np.stack([_z(f), _z(sim)], axis=1), _z(y), rcond=None)[0]
    assert a.estimates["beta_frequency"] == pytest.approx(beta[0], abs=1e-10)
    assert a.estimates["beta_similarity"] == pytest.approx(beta[1], abs=1e-10)
    pf = np.corrcoef(_residual(y, sim), _residual(f, sim))[0, 1]
    ps = np.corrcoef(_residual(y, f), _residual(sim, f))[0, 1]
    assert a.estimates["partial_frequency"] == pytest.approx(pf, abs=1e-10)
    assert a.estimates["partial_similarity"] == pytest.approx(ps, abs=1e-10)
    # bootstrap: the percentile interval of the same resamples, recomputed by brute force
    idx = np.random.default_rng(1).integers(0, n, size=(500, n))
    boot = [np.linalg.lstsq(np.stack([_z(f[i]), _z(sim[i])], axis=1), _z(y[i]), rcond=None)[0][0] for i in idx]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert a.intervals["beta_frequency"] == pytest.approx((lo, hi), abs=1e-9)
    fit = frequency_fit(freq, y)
    assert a.fit.slope == fit.slope and a.fit.n == fit.n
    assert a.explains in ("frequency", "both")


def test_attribution_is_undefined_with_a_constant_predictor() -> None:
    a = attribute([1.0, 2.0, 3.0, 4.0], [5, 5, 5, 5], [0.1, 0.2, 0.3, 0.5], n_boot=10)
    assert not a.defined and "constant" in a.reason and a.explains == "neither"
    with pytest.raises(ValueError, match="one value per item"):
        attribute([1.0], [1, 2], [1.0])


def test_views_of_a_run_log(tmp_path) -> None:
    torch.manual_seed(0)
    tok = ByteTokenizer()
    items = [*ITEMS, ("fog", "the fog is", "sand"), ("sea", "the sea is", "red")]
    probe = FrequencyProbe(items, tok, layer="blocks.1")
    _train(probe, TinyGPT(GPTConfig(block_size=48)), _batches(tok, 4, 2, seed=9), run_log=tmp_path / "run")
    run = open_run(tmp_path / "run")
    kind = kinds.of(run.describe("frequency"))
    assert kind.type_name == "FrequencyProbe"
    section = kind.summarize(run, "frequency", run.describe("frequency"), 10)
    last = probe.history[-1].tensors
    gains = last["delta_logp"].tolist()
    assert [r["item"] for r in section["items"]] == [items[i][0] for i in np.argsort(gains)[::-1]]
    direct = attribution_from_run(run, "frequency", n_boot=1000).to_json()
    assert section["attribution"]["lex_sum"] == direct
    assert direct["n"] == 5 and direct["window"] == [0, 4]
    text = "\n".join(kind.summary_lines(section))
    assert "attribution of delta logp" in text and ("beta_frequency" in text or "undefined" in text)
    # dashboard panel and status
    d = Dashboard(clock=None)
    d.register_source("frequency", run.describe("frequency"))
    for record in run.records():
        d.write(record)
    assert "frequency: 5 items" in d.summary_line()
    out = io.StringIO()
    Console(file=out, width=140).print(d)
    assert "frequency and similarity, by gain" in out.getvalue()
    # replay line, plot, assertion
    tensors = {k: v.numpy() for k, v in last.items()}
    assert kind.replay(tensors, run.describe("frequency")).startswith("keyword count max")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    kind.plot(ax, run, "frequency", 10)
    assert ax.get_xlabel() == "log(1 + keyword count)" and len(ax.collections[0].get_offsets()) == 5
    plt.close(fig)
    from probes.testing.assertions import assert_seen_at_least

    assert_seen_at_least(tmp_path / "run", 0)
    with pytest.raises(AssertionError, match="keyword_count of item"):
        assert_seen_at_least(tmp_path / "run", 10**9)
