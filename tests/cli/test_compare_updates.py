"""``probes compare RUN_A RUN_B`` on two runs holding LayerUpdateProbe records: every printed number
equals the value computed here from the raw records (plain numpy), the JSON holds the same numbers,
and ``--plot`` draws the shares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probes import open_run
from probes.cli import main
from probes.console.numbers import fmt_num
from probes.demos import GPTConfig, TinyGPT, corpus_loader
from probes.integrations.loop import ProbeLoop
from probes.updates.probe import LayerUpdateProbe

CFG = GPTConfig(n_layer=2, n_embd=16, n_head=2, block_size=32)


def _stage(path: Path, probes: list[LayerUpdateProbe], *, seed: int, steps: int, adam: bool) -> Path:
    torch.manual_seed(seed)
    model = TinyGPT(CFG)
    opt = (torch.optim.AdamW(model.parameters(), lr=3e-3) if adam
           else torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    with ProbeLoop(probes, model, run_log=path) as loop:
        for b in corpus_loader(n_windows=4 * steps, batch_size=4, block_size=32, seed=seed):
            logits = model(b["input_ids"])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 256), b["labels"].reshape(-1)).backward()
            loop.optimizer_step(opt)
            opt.zero_grad()
    return path


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two stages with differently named sources; the SFT stage records no drift and every second step."""
    root = tmp_path_factory.mktemp("updates_compare")
    pre = _stage(root / "pre", [LayerUpdateProbe(name="pretrain")], seed=0, steps=5, adam=False)
    sft = _stage(root / "sft", [LayerUpdateProbe(name="sft", drift=False, every_n_steps=2)], seed=1, steps=6,
                 adam=True)
    return pre, sft


def _table(text: str, title: str) -> dict[str, list[str]]:
    """Rows (first cell -> other cells) of the table under the line containing ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line) + 2  # skip the title and the header
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = [c.strip() for c in line.strip().split("  ") if c.strip()]
        rows[cells[0]] = cells[1:]
    return rows


def _expected(path: Path, source: str) -> dict[str, object]:
    """The independent reference: plain numpy over the raw records."""
    run = open_run(path)
    groups = [g if isinstance(g, str) else g["name"] for g in run.describe(source)["groups"]]
    share = run.read(f"{source}/share")[1].astype(np.float64)
    relative = run.read(f"{source}/relative")[1].astype(np.float64)
    have = run.metrics(f"{source}/")
    drift = None
    if f"{source}/drift_relative" in have:
        drift = run.read(f"{source}/drift_relative")[1][-1].astype(np.float64)
    return {"groups": groups, "share": share.mean(axis=0), "relative": relative.mean(axis=0), "drift": drift,
            "readings": len(share)}


def test_compare_prints_the_update_shares_of_two_stages(stages, capsys, tmp_path) -> None:
    pre, sft = stages
    out_json = tmp_path / "c.json"
    assert main(["compare", str(pre), str(sft), "--name", "pre", "--name", "sft", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    a, b = _expected(pre, "pretrain"), _expected(sft, "sft")
    assert a["groups"] == b["groups"] == ["embed", "block.00", "block.01", "other"]
    assert a["readings"] == 5 and b["readings"] == 3
    assert np.isfinite(a["share"]).all() and np.isfinite(b["share"]).all()
    assert "pre (pretrain) (5 readings to step 5), sft (3 readings to step 6)" in text

    for title, key in (("mean share of ||dW||^2", "share"), ("mean ||dW||/||W||", "relative")):
        rows = _table(text, title)
        assert list(rows) == a["groups"]
        for i, g in enumerate(a["groups"]):
            va, vb = float(a[key][i]), float(b[key][i])
            assert rows[g] == [fmt_num(va), fmt_num(vb), fmt_num(vb - va)], (title, g)
    drift = _table(text, "||W - W0||/||W0|| at the last reading")
    for i, g in enumerate(a["groups"]):
        assert drift[g] == [fmt_num(float(a["drift"][i])), "-", "-"]

    report = json.loads(out_json.read_text())
    (sec,) = report["sections"]
    assert sec["kind"] == "updates" and sec["sources"] == {"pre": "pretrain", "sft": "sft"}
    for i, row in enumerate(sec["groups"]):
        assert row["share"]["pre"] == pytest.approx(a["share"][i], rel=1e-12)
        assert row["share"]["sft"] == pytest.approx(b["share"][i], rel=1e-12)
        assert row["share_difference"]["sft"] == pytest.approx(b["share"][i] - a["share"][i], rel=1e-9, abs=1e-15)
        assert row["relative"]["sft"] == pytest.approx(b["relative"][i], rel=1e-12)
        assert row["drift_relative"] == {"pre": pytest.approx(a["drift"][i], rel=1e-12), "sft": None}


def test_compare_plot_draws_grouped_bars(stages, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    pre, sft = stages
    image = tmp_path / "shares.png"
    assert main(["compare", str(pre), str(sft), "--plot", str(image), "--quiet"]) == 0
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 5_000


def test_sources_of_the_same_name_pair_by_name(tmp_path, capsys) -> None:
    a = _stage(tmp_path / "a", [LayerUpdateProbe(name="updates")], seed=0, steps=3, adam=True)
    b = _stage(tmp_path / "b", [LayerUpdateProbe(name="updates")], seed=2, steps=3, adam=True)
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    ea, eb = _expected(a, "updates"), _expected(b, "updates")
    rows = _table(text, "mean share of ||dW||^2")
    for i, g in enumerate(ea["groups"]):
        va, vb = float(ea["share"][i]), float(eb["share"][i])
        assert rows[g] == [fmt_num(va), fmt_num(vb), fmt_num(vb - va)]


def test_no_pairing_is_an_error(tmp_path, capsys) -> None:
    a = _stage(tmp_path / "a", [LayerUpdateProbe(name="u1"), LayerUpdateProbe(name="u2")], seed=0, steps=2, adam=True)
    b = _stage(tmp_path / "b", [LayerUpdateProbe(name="u3")], seed=0, steps=2, adam=True)
    assert main(["compare", str(a), str(b)]) == 1
    assert "share no keyword, priming, format or layer-update source" in capsys.readouterr().err
