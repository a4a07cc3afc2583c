"""`probes summary | replay | watch | export | plot` on a small real run log.

The log comes from training the tiny LM for a few steps with a real KeywordProbe plus two
stand-in probes that emit the PrimingProbe and FormatProbe metric names of docs/records.md with
values fixed in advance, so every number the commands print can be checked independently.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import threading
import time

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from probes import KeywordProbe
from probes.callbacks.base import ProbeCallback
from probes.callbacks.run_log import RunLog
from probes.cli import main
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.records import Record
from probes.runlog import RunWriter, open_run
from probes.runlog.cli_support import fmt_num

STEPS = 8
FORMATS = ["boxed", "answer_is"]
SAMPLES = ["s0", "s1", "s2", "s3"]
P_BEFORE = np.array([1e-5, 5e-4, 2e-2, 0.3])
COLLAPSE_AT = 5


def priming_values(step: int) -> dict[str, torch.Tensor]:
    s_prime = P_BEFORE ** 0.5 * (1 + step)
    return {
        "p_learn": torch.tensor(np.minimum(P_BEFORE * (1 + step), 1.0)),
        "p_before": torch.tensor(P_BEFORE),
        "s_prime": torch.tensor(s_prime),
        "log10_s_prime": torch.tensor(np.log10(s_prime)),
        "exposures": torch.full((4,), step, dtype=torch.int64),
        "surprising": torch.tensor(P_BEFORE < 1e-3),
        "has_baseline": torch.ones(4, dtype=torch.bool),
    }


def format_values(step: int) -> dict[str, torch.Tensor]:
    share = 0.5 + 0.08 * step
    dist = torch.tensor([share, (1 - share) * 0.75, (1 - share) * 0.25], dtype=torch.float64)
    ent = float(-(dist * dist.log()).sum())
    return {
        "dist": dist,
        "entropy_bits": torch.tensor(ent / math.log(2)),
        "dominant": torch.tensor(0),
        "dominant_share": dist.max(),
        "collapsed": torch.tensor(step >= COLLAPSE_AT),
    }


class StandIn(ProbeCallback):
    """Emits fixed values under a real probe type's name, before every optimizer step."""

    def __init__(self, name: str, type_: str, values, extra: dict) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name)
        self.type_, self.values, self.extra = type_, values, extra

    def describe(self) -> dict:
        return {"type": self.type_, "source": self.source, **self.extra}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # type: ignore[no-untyped-def]
        self.emit(trainer.global_step, self.values(trainer.global_step))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("cli") / "run"
        pairs = [(f"{t.name}:{s}", t.context(s), a, t.name) for t in THEMES for s, a in list(t.facts.items())[:2]]
        kw = KeywordProbe(pairs, ByteTokenizer(), model="model")
        priming = StandIn("priming", "PrimingProbe", priming_values, {"samples": [{"name": n} for n in SAMPLES]})
        fmt = StandIn("format", "FormatProbe", format_values, {"formats": [{"name": n} for n in FORMATS]})
        pl.seed_everything(0, verbose=False)
        module = TinyLM(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=48))
        trainer = pl.Trainer(
            max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[kw, priming, fmt, RunLog(run_dir, flush_every_n=5)],
        )
        trainer.fit(module, corpus_loader(n_windows=64, batch_size=4, block_size=32))
    finally:
        torch.set_num_threads(before)
    return run_dir, kw


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def kw_history(kw: KeywordProbe, name: str) -> np.ndarray:
    return torch.stack([r.tensors[name] for r in kw.history]).numpy()


def test_summary_json_matches_the_probes(real_run, capsys):
    run_dir, kw = real_run
    rc, out, _ = cli(capsys, "summary", run_dir, "--json", "--limit", "100")
    assert rc == 0
    s = json.loads(out)
    assert s["run"]["status"] == "finished" and s["run"]["last_step"] == STEPS
    by_source = {x["source"]: x for x in s["sources"]}
    assert list(by_source) == ["keyword", "priming", "format"]
    p = kw_history(kw, "p_first")
    names = [pair.name for pair in kw.probe_set.pairs]
    rows = {r["pair"]: r for r in by_source["keyword"]["keyword"]["pairs"]}
    for j, name in enumerate(names):
        assert rows[name]["p_first_initial"] == float(p[0, j]) and rows[name]["p_first_final"] == float(p[-1, j])
        assert rows[name]["delta_log10"] == pytest.approx(math.log10(p[-1, j]) - math.log10(p[0, j]), rel=1e-6)
        assert rows[name]["rank_final"] == int(kw_history(kw, "rank")[-1, j])
    p_first = {m["name"]: m for m in by_source["keyword"]["metrics"]}["p_first"]
    i, j = np.unravel_index(np.argmax(p), p.shape)
    assert p_first["max"] == {"value": float(p[i, j]), "step": int(i), "element": names[j]}
    assert p_first["final_mean"] == pytest.approx(float(p[-1].mean()), rel=1e-6)
    pr = by_source["priming"]["priming"]
    assert pr["surprising"] == ["s0", "s1"] and pr["threshold"] == 1e-3
    assert [r["exposures"] for r in pr["samples"]] == [STEPS - 1] * 4
    fm = by_source["format"]["format"]
    final = format_values(STEPS - 1)
    assert fm["collapse_events"] == [
        {
            "step": COLLAPSE_AT,
            "event": "collapsed",
            "dominant": "boxed",
            "dominant_share": float(format_values(COLLAPSE_AT)["dominant_share"]),
            "entropy_bits": float(format_values(COLLAPSE_AT)["entropy_bits"]),
        }
    ]
    assert fm["final_distribution"] == dict(zip([*FORMATS, "other"], final["dist"].tolist()))


def test_summary_text(real_run, capsys):
    run_dir, kw = real_run
    rc, out, _ = cli(capsys, "summary", run_dir)
    assert rc == 0
    assert "status   finished   timeline 0 of 1" in out
    assert "surprising samples (p_before < 0.001) at step 7: 2 of 4: s0, s1" in out
    assert re.search(rf"^\s+{COLLAPSE_AT}\s+collapsed\s+boxed\s", out, re.M)
    pair = kw.probe_set.pairs[0].name
    p = kw_history(kw, "p_first")
    row = next(line for line in out.splitlines() if line.strip().startswith(pair + " "))
    assert fmt_num(float(p[-1, 0])) in row.split()


def test_replay_prints_every_record(real_run, capsys):
    run_dir, kw = real_run
    rc, out, _ = cli(capsys, "replay", run_dir, "--speed", "0")
    assert rc == 0
    lines = [line for line in out.splitlines() if line.startswith("step")]
    assert len(lines) == len(kw.history) + 2 * STEPS  # keyword has one extra final reading
    logp = kw_history(kw, "logp_first") / math.log(10)
    kw_lines = [line for line in lines if " keyword " in line]
    for step, line in enumerate(kw_lines):
        assert line.startswith(f"step {step:>6}  keyword")
        assert f"mean log10 p_first {fmt_num(float(logp[step].mean()))} " in line
    collapsed = [int(line.split()[1]) for line in lines if "COLLAPSED" in line]
    assert collapsed == list(range(COLLAPSE_AT, STEPS))
    rc, out, _ = cli(capsys, "replay", run_dir, "--speed", "0", "--source", "format", "--start", "2", "--stop", "4")
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step")] == ["2", "3"]


def test_replay_paces_by_recorded_time(real_run, capsys, monkeypatch):
    run_dir, _ = real_run
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    rc, _, _ = cli(capsys, "replay", run_dir, "--speed", "2", "--source", "keyword")
    assert rc == 0
    t = open_run(run_dir).times("keyword")
    np.testing.assert_allclose(slept, np.minimum(np.diff(t) / 2, 1.0))


def test_export_csv_round_trips(real_run, capsys, tmp_path):
    run_dir, kw = real_run
    rc, out, _ = cli(capsys, "export", run_dir, "--csv", tmp_path)
    assert rc == 0 and out.count("wrote ") == 3
    with open(tmp_path / "keyword.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    names = [pair.name for pair in kw.probe_set.pairs]
    assert header[:3] == ["step", "epoch", "time"]
    assert header[3 : 3 + len(names)] == [f"p_first[{n}]" for n in names]
    p = kw_history(kw, "p_first")
    got = np.array([[np.float32(float(x)) for x in r[3 : 3 + len(names)]] for r in body])
    np.testing.assert_array_equal(got, p)  # exact: shortest round-trip text
    assert [int(r[0]) for r in body] == list(range(STEPS + 1))
    with open(tmp_path / "format.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["collapsed"] for r in rows] == [str(s >= COLLAPSE_AT) for s in range(STEPS)]
    assert [float(r["dist[other]"]) for r in rows] == [format_values(s)["dist"][2].item() for s in range(STEPS)]
    rc, out, _ = cli(capsys, "export", run_dir, "--csv", tmp_path / "sub", "--prefix", "priming/p_", "--start", "3")
    with open(tmp_path / "sub" / "priming.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "epoch", "time"] + [f"{m}[{n}]" for m in ("p_learn", "p_before") for n in SAMPLES]
    assert [r[0] for r in rows[1:]] == [str(s) for s in range(3, STEPS)]


def test_plot_png(real_run, capsys, tmp_path):
    import matplotlib.image

    run_dir, _ = real_run
    png = tmp_path / "out" / "run.png"
    rc, out, _ = cli(capsys, "plot", run_dir, "-o", png, "--dpi", "50", "--width", "8")
    assert rc == 0 and "3 panels" in out
    img = matplotlib.image.imread(png)
    assert img.shape[:2] == (round(3 * 3.2 * 50), 8 * 50)
    rgb = img[..., :3]
    assert rgb.std() > 0.1  # not blank
    assert (rgb.min(axis=2) < 0.9).mean() > 0.05  # a good share of the canvas is drawn on


def test_plot_without_matplotlib_says_how_to_install(real_run, capsys, monkeypatch, tmp_path):
    run_dir, _ = real_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, _, err = cli(capsys, "plot", run_dir, "-o", tmp_path / "x.png")
    assert rc == 2 and "pip install 'probes[plot]'" in err
    assert not (tmp_path / "x.png").exists()


def test_watch_follows_a_live_run(tmp_path, capsys):
    run_dir = tmp_path / "live"

    def train() -> None:
        time.sleep(0.1)
        with RunWriter(run_dir, flush_every_n=2) as w:
            w.register_source("format", {"type": "FormatProbe", "formats": FORMATS})
            for s in range(8):
                w.write(Record(s, "format", format_values(s)))
                time.sleep(0.03)

    t = threading.Thread(target=train)
    t.start()
    rc, out, _ = cli(capsys, "watch", run_dir, "--interval", "0.02", "--timeout", "20")
    t.join()
    assert rc == 0
    steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("step")]
    assert steps == list(range(8))
    assert out.splitlines()[-1] == "run finished at step 7"


def test_watch_reports_failure_and_timeout(tmp_path, capsys):
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path / "failed") as w:
            w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
            raise RuntimeError
    rc, out, _ = cli(capsys, "watch", tmp_path / "failed", "--interval", "0.01")
    assert rc == 1 and "run failed at step 0" in out
    w = RunWriter(tmp_path / "stalled")
    w.write(Record(0, "x", {"v": torch.tensor(1.0)}))
    w.flush()
    rc, out, _ = cli(capsys, "watch", tmp_path / "stalled", "--interval", "0.01", "--timeout", "0.1")
    assert rc == 1 and "no new records for 0.1 s (status running)" in out
    w.close()
    rc, _, err = cli(capsys, "watch", tmp_path / "never", "--interval", "0.01", "--timeout", "0.05")
    assert rc == 1 and "did not appear within 0.05 s" in err


def test_errors_and_exit_codes(real_run, capsys, tmp_path):
    rc, _, err = cli(capsys, "summary", tmp_path / "missing")
    assert rc == 1 and "does not exist" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    shards = sorted(real_run[0].glob("shard-*"))
    for p in shards:
        (broken / p.name).write_bytes(p.read_bytes())
    victim = broken / shards[0].name
    victim.write_bytes(victim.read_bytes()[:50])
    rc, _, err = cli(capsys, "summary", broken)
    assert rc == 1 and victim.name in err and "--lenient" in err
    rc, out, err = cli(capsys, "summary", broken, "--lenient")
    assert rc == 0 and f"warning: Skipping shard {victim}" in err and f"skipped  {victim.name}" in out
    rc, _, err = cli(capsys, "replay", real_run[0], "--speed", "-1")
    assert rc == 2 and "--speed must be >= 0" in err
    rc, _, err = cli(capsys, "export", real_run[0], "--csv", tmp_path / "e", "--source", "nope")
    assert rc == 1 and "no source 'nope'" in err
    rc, _, err = cli(capsys, "replay", real_run[0], "--speed", "0", "--source", "nope")
    assert rc == 1 and "probes replay: error: no source 'nope'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli(capsys, "summary", empty)
    assert rc == 1 and "holds no records" in err
    for command in ("summary", "replay", "watch", "export", "plot"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert f"usage: probes {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["export", str(real_run[0])])  # --csv is required
    assert exc.value.code == 2


def test_resumed_timeline_in_summary_and_watch(tmp_path, capsys):
    from probes.runlog import Branch

    run_dir = tmp_path / "resumed"
    crashed = RunWriter(run_dir, flush_every_n=1)
    for s in range(6):
        crashed.write(Record(s, "x", {"v": torch.tensor(float(s))}))
    crashed._lock.release()  # what SIGKILL does: the records stay, the lock goes, no final status

    def resume() -> None:
        time.sleep(1.0)  # watch prints timeline 0 first
        with RunWriter(run_dir, branch=Branch(parent=0, fork_step=3), flush_every_n=1) as w:
            for s in range(4, 8):
                w.write(Record(s, "x", {"v": torch.tensor(100.0 + s)}))

    t = threading.Thread(target=resume)
    t.start()
    rc, out, _ = cli(capsys, "watch", run_dir, "--interval", "0.02", "--from-start", "--timeout", "20")
    t.join()
    assert rc == 0
    assert "-- timeline 1 resumed after step 3; later records are superseded --" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("step")]
    assert [int(x[1]) for x in lines] == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7]  # 4 and 5 are re-shown from timeline 1
    assert [float(x[4]) for x in lines[-4:]] == [104.0, 105.0, 106.0, 107.0]
    rc, out, _ = cli(capsys, "summary", run_dir)
    assert rc == 0 and "timeline 1 of 2 (resumed after step 3 of timeline 0)" in out
    rc, out, _ = cli(capsys, "summary", run_dir, "--timeline", "0", "--json")
    assert json.loads(out)["sources"][0]["last_step"] == 5
