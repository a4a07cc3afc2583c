"""Per-item values reach any Lightning logger (opt-in, capped), equal to what the probes recorded."""

from __future__ import annotations

import csv
import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from probes import KeywordProbe, LearningSample, PrimingProbe
from probes.demos import ByteTokenizer, GPTConfig, TinyLM
from tests.testing.loops import fact_loader

CFG = GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=64)
PAIRS = [("sand", "the colour of sand is", "vermilion"), ("a/b", "the sky is", "blue"), ("x", "sea is", "red")]


def _columns(path) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r.get(k)] for k in rows[0]}


def test_csv_logger_holds_per_item_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    keyword = KeywordProbe(PAIRS, ByteTokenizer(), model="model", log_items=2)  # cap: first two pairs
    sample = LearningSample("pearl", "the colour of a pearl is vermilion.", "vermilion", ["the colour of snow is"])
    priming = PrimingProbe([sample], ByteTokenizer(), model="model", baseline=0, count_exposures=False,
                           log_items=True)
    logger = CSVLogger(tmp_path, name="run", version=0)
    pl.Trainer(max_steps=4, callbacks=[keyword, priming], logger=logger, log_every_n_steps=1,
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               accelerator="cpu").fit(TinyLM(CFG, lr=1e-2), fact_loader(4))
    cols = _columns(tmp_path / "run" / "version_0" / "metrics.csv")
    logged_steps = [r.step for r in keyword.history[:-1]]  # the final reading is not logged
    assert logged_steps == [0, 1, 2, 3]
    p_first = torch.stack([r.tensors["p_first"] for r in keyword.history[:-1]])
    log10_seq = torch.stack([r.tensors["logp_seq"] for r in keyword.history[:-1]]) / math.log(10)
    assert cols["probes/keyword/p_first/sand"] == pytest.approx(p_first[:, 0].tolist(), rel=1e-6)
    assert cols["probes/keyword/p_first/a_b"] == pytest.approx(p_first[:, 1].tolist(), rel=1e-6)  # '/' -> '_'
    assert cols["probes/keyword/log10_p_seq/sand"] == pytest.approx(log10_seq[:, 0].tolist(), rel=1e-6)
    assert not any(k.endswith("/x") for k in cols)  # over the cap of 2
    s_prime = [float(r.tensors["log10_s_prime"][0]) for r in priming.history[:-1]]
    assert cols["probes/priming/log10_s_prime/pearl"] == pytest.approx(s_prime, rel=1e-6, abs=1e-9)


def test_log_items_is_validated() -> None:
    with pytest.raises(ValueError, match="log_items"):
        KeywordProbe(PAIRS, ByteTokenizer(), log_items=-1)


def test_export_tensorboard_writes_every_element(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from probes.cli.entry import main
    from probes.core.records import Record
    from probes.runlog import RunWriter

    pairs = [{"name": "sky", "context": "c", "keyword": "k", "group": ""},
             {"name": "a/b", "context": "c", "keyword": "k", "group": ""}]
    with RunWriter(tmp_path / "run", flush_every_n=2) as w:
        w.register_source("keyword", {"type": "KeywordProbe", "probe_set": {"pairs": pairs}})
        for s in range(0, 10, 3):
            w.write(Record(s, "keyword", {"p_first": torch.tensor([0.01 * s, 0.5]), "rank": torch.tensor([s, 2])}))
    assert main(["export", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "wrote 4 scalar tags" in capsys.readouterr().out
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["keyword/p_first/a_b", "keyword/p_first/sky", "keyword/rank/a_b",
                                             "keyword/rank/sky"]
    sky = acc.Scalars("keyword/p_first/sky")
    assert [e.step for e in sky] == [0, 3, 6, 9]
    assert [e.value for e in sky] == pytest.approx([0.0, 0.03, 0.06, 0.09], rel=1e-6)
    assert [e.value for e in acc.Scalars("keyword/rank/a_b")] == [2, 2, 2, 2]
