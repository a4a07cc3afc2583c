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
from probes.callbacks.run_log import RunLog
from probes.cli.common import fmt_num
from probes.cli.entry import main
from probes.core.records import Record
from probes.demos import THEMES, ByteTokenizer, GPTConfig, TinyLM, corpus_loader
from probes.integrations.lightning import ProbeCallback
from probes.runlog import RunWriter, open_run

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
    share = 0.5 + 0.06 * step  # 0.5 .. 0.92: dominant from the start, past 0.8 from step 5
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
    run_dir, _ = real_run
    rc, out, _ = cli(capsys, "summary", run_dir)
    assert rc == 0
    assert "status   finished   timeline 0 of 1" in out
    assert "surprising samples (p_before < 0.001) at step 7: 2 of 4: s0, s1" in out
    assert re.search(rf"^\s+{COLLAPSE_AT}\s+collapsed\s+boxed\s", out, re.M)


# --- every printed figure against the run log read directly -------------------------------------


def printed(cell: str, x: float, digits: int = 4) -> bool:
    """``cell`` shows ``x`` to ``digits`` significant digits (half a unit of the last digit)."""
    if math.isnan(x):
        return cell == "nan"
    if math.isinf(x):
        return cell == ("inf" if x > 0 else "-inf")
    got = float(cell)
    if x == 0:
        return got == 0
    unit = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    return abs(got - x) <= 0.5 * unit * 1.0001


def test_printed_helper_rejects_wrong_figures():
    assert printed("0.001235", 0.00123456) and printed("-3.142", -3.14159) and printed("1.000e-07", 1e-7)
    assert not printed("3.142", -3.14159) and not printed("0.01235", 0.00123456) and not printed("3.15", 3.14159)


def text_table(out: str, header_start: str) -> list[list[str]]:
    """Rows (cells split at runs of 2+ spaces) of the plain table whose header starts with ``header_start``."""
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith(header_start))
    rows = []
    for line in lines[i + 1 :]:
        if not line.strip() or line.strip().startswith(("final distribution:", "final dominant", "no data or shown")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def section(out: str, source: str) -> str:
    start = out.index(f"\n{source} (")
    nxt = [out.index(f"\n{s} (", start + 1) for s in ("keyword", "priming", "format") if f"\n{s} (" in out[start + 1 :]]
    return out[start : min(nxt, default=len(out))]


def labels_of(run, source: str, shape: tuple[int, ...]) -> list[str]:
    d = run.describe(source)
    if not shape:
        return []
    if d["type"] == "KeywordProbe":
        return [p["name"] for p in d["probe_set"]["pairs"]]
    if d["type"] == "PrimingProbe":
        return [s["name"] for s in d["samples"]]
    names = [f["name"] for f in d["formats"]] + ["other"]
    return names if shape[0] == len(names) else [str(i) for i in range(shape[0])]


def extreme(steps: np.ndarray, values: np.ndarray, labels: list[str], which: str) -> tuple[float, int, str]:
    """Brute force over every (step, element): the first minimum/maximum in row-major order."""
    best = None
    for r in range(len(steps)):
        flat = np.atleast_1d(values[r]).astype(np.float64)
        for c, v in enumerate(flat):
            if not np.isfinite(v):
                continue
            if best is None or (v < best[0] if which == "min" else v > best[0]):
                best = (float(v), int(steps[r]), labels[c] if labels else "")
    assert best is not None
    return best


def test_summary_metric_tables_match_the_log(real_run, capsys):
    run_dir, _ = real_run
    rc, out, _ = cli(capsys, "summary", run_dir)
    assert rc == 0
    run = open_run(run_dir)
    for source in run.sources():
        text = section(out, source)
        rows = {r[0]: r for r in text_table(text, "metric  ")}
        left = re.search(r"^  no data or shown below: (.+)$", text, re.M)  # rows without data (docs/console.md)
        hidden = set(left.group(1).split(", ")) if left else set()
        metrics = run.metrics(f"{source}/")
        assert sorted(rows) == sorted(m.split("/", 1)[1] for m in metrics if m.split("/", 1)[1] not in hidden), source
        for name in metrics:
            if name.split("/", 1)[1] in hidden:
                continue
            steps, values = run.read(name)
            row = rows[name.split("/", 1)[1]]
            shape = values.shape[1:]
            assert row[1] == ("x".join(map(str, shape)) or "scalar"), name
            last = values[-1]
            if values.dtype == np.bool_:
                assert row[2] == (f"{int(last.sum())} true" if shape else ("yes" if bool(last) else "no")), name
                continue
            if shape:
                finite = last[np.isfinite(last)].astype(np.float64)
                assert row[2].startswith("mean ") and printed(row[2][5:], float(finite.mean())), (name, row)
            elif values.dtype.kind in "iu":
                assert row[2] == str(int(last)), name
            else:
                assert printed(row[2], float(last)), (name, row)
            labels = labels_of(run, source, shape)
            for col, which in ((3, "min"), (4, "max")):
                v, step, label = extreme(steps, values, labels, which)
                m = re.fullmatch(r"(\S+) \((\d+)(?:, (.+))?\)", row[col])
                assert m, (name, row[col])
                assert int(m[2]) == step and (m[3] or "") == label, (name, which, row[col], step, label)
                assert m[1] == str(int(v)) if values.dtype.kind in "iu" else printed(m[1], v), (name, row[col], v)


def test_summary_pair_sample_and_event_tables_match_the_log(real_run, capsys):
    run_dir, _ = real_run
    rc, out, _ = cli(capsys, "summary", run_dir)
    assert rc == 0
    run = open_run(run_dir)
    # keyword: every pair, ordered by |change of log10 p_seq| (the ranking rule of docs/console.md)
    _, p = run.read("keyword/p_first")
    _, lp = run.read("keyword/logp_seq")
    _, rank = run.read("keyword/rank")
    pairs = run.describe("keyword")["probe_set"]["pairs"]
    rows = text_table(section(out, "keyword"), "pair  ")
    assert len(rows) == len(pairs)
    deltas = []
    for row in rows:
        j = [q["name"] for q in pairs].index(row[0])
        first, final = math.exp(float(lp[0, j])), math.exp(float(lp[-1, j]))
        delta = (float(lp[-1, j]) - float(lp[0, j])) / math.log(10)
        deltas.append(abs(delta))
        group = pairs[j].get("group") or ""
        cells = row[1:] if group else ["", *row[1:]]  # an empty group cell merges with the spaces
        assert cells[0] == group
        assert printed(cells[1], first) and printed(cells[2], final), row
        assert cells[3][0] == ("+" if delta >= 0 else "-") and printed(cells[3].lstrip("+"), delta), (row, delta)
        assert printed(cells[4], float(p[-1, j])), row
        assert cells[5] == str(int(rank[-1, j]))
    assert deltas == sorted(deltas, reverse=True)
    # priming: every sample at the last step
    last = {m: run.read(f"priming/{m}")[1][-1] for m in ("p_before", "s_prime", "log10_s_prime", "exposures")}
    rows = text_table(section(out, "priming"), "sample  ")
    by_prime = sorted(range(len(SAMPLES)), key=lambda i: (-float(last["log10_s_prime"][i]), i))  # most primed first
    assert [r[0] for r in rows] == [SAMPLES[i] for i in by_prime]
    for i, row in zip(by_prime, rows):
        assert printed(row[1], float(last["p_before"][i])) and printed(row[2], float(last["s_prime"][i])), row
        assert printed(row[3], float(last["log10_s_prime"][i])), row
        assert row[4] == str(int(last["exposures"][i])) and row[5] == ("yes" if P_BEFORE[i] < 1e-3 else "no")
    # format: the collapse event and the final distribution
    rows = text_table(section(out, "format"), "step  ")
    want = format_values(COLLAPSE_AT)
    assert len(rows) == 1 and rows[0][:3] == [str(COLLAPSE_AT), "collapsed", "boxed"]
    assert printed(rows[0][3], float(want["dominant_share"])) and printed(rows[0][4], float(want["entropy_bits"]))
    m = re.search(r"final distribution: boxed (\S+), answer_is (\S+), other (\S+)$", out, re.M)
    assert m is not None
    for cell, v in zip(m.groups(), format_values(STEPS - 1)["dist"].tolist()):
        assert printed(cell, v)


def test_replay_lines_match_the_log(real_run, capsys):
    run_dir, _ = real_run
    rc, out, _ = cli(capsys, "replay", run_dir, "--speed", "0")
    assert rc == 0
    run = open_run(run_dir)
    data = {m: run.read(m) for m in run.metrics()}
    lines = [line for line in out.splitlines() if line.startswith("step")]
    seen = {"keyword": 0, "priming": 0, "format": 0}
    for line in lines:
        m = re.match(r"step +(\d+)  (\w+) +(.*)$", line)
        assert m, line
        step, source, rest = int(m[1]), m[2], m[3]
        k = int(np.nonzero(run.steps(source) == step)[0][0])
        seen[source] += 1
        fields = dict(re.findall(r"([a-z][a-z0-9_ ]*?) (-?[\d.e+-]+|nan|inf|-inf)(?:  |$)", rest))
        if source == "keyword":
            lp = data["keyword/logp_first"][1][k].astype(np.float64) / math.log(10)
            assert printed(fields["mean log10 p_first"], lp.mean()), line
            assert printed(fields["min"], lp.min()) and printed(fields["max"], lp.max()), line
            assert printed(fields["median rank"], float(np.median(data["keyword/rank"][1][k]))), line
        elif source == "priming":
            p_learn = data["priming/p_learn"][1][k].astype(np.float64)
            assert printed(fields["mean log10 p_learn"], np.log10(p_learn).mean()), line
            assert printed(fields["max log10 s_prime"], data["priming/log10_s_prime"][1][k].max()), line
            sur = data["priming/surprising"][1][k]
            assert f"surprising {int(sur.sum())}/{sur.size}" in rest
            assert fields["exposures"] == str(int(data["priming/exposures"][1][k].max())), line
        else:
            em = re.search(r"entropy (\S+) bits", rest)
            assert em and printed(em[1], float(data["format/entropy_bits"][1][k])), line
            dm = re.search(r"dominant (\w+) (\S+)", rest)
            names = [*FORMATS, "other"]
            assert dm and dm[1] == names[int(data["format/dominant"][1][k])], line
            assert printed(dm[2], float(data["format/dominant_share"][1][k])), line
            assert rest.endswith("COLLAPSED" if bool(data["format/collapsed"][1][k]) else "not collapsed"), line
    assert seen == {s: len(run.steps(s)) for s in seen}


def test_fmt_num_hand_written():
    """The documented format: 4 significant digits, scientific outside [1e-3, 1e5), words for bools."""
    cases = [
        (None, "-"), (True, "yes"), (False, "no"), (7, "7"), (-7, "-7"), (123456789, "123456789"),
        (0.0, "0"), (1.0, "1"), (-1.0, "-1"), (0.5, "0.5"), (-0.25, "-0.25"), (3.14159, "3.142"),
        (-2.71828, "-2.718"), (0.001, "0.001"), (0.0123456, "0.01235"), (-0.0123456, "-0.01235"),
        (987.654, "987.7"), (-987.654, "-987.7"), (0.000999, "9.990e-04"), (-0.000999, "-9.990e-04"),
        (1e5, "1.000e+05"), (-1e-7, "-1.000e-07"), (-123456.0, "-1.235e+05"), (1e-300, "1.000e-300"),
        (math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"),
        (-0.0, "0"), (12345.6, "12346"), (-12345.6, "-12346"), (99999.0, "99999"), (9999.6, "10000"),
        (9999.4, "9999"), (10000.0, "10000"),
    ]
    for x, want in cases:
        assert fmt_num(x) == want, (x, fmt_num(x), want)
    assert fmt_num(np.float32(0.25)) == "0.25" and fmt_num(np.float64(-3.14159)) == "-3.142"


def test_table_layout_hand_written():
    from probes.cli.common import table

    assert table(["name", "x"], [["a", 1.5], ["bb", -0.25]]).splitlines() == [
        "  name      x",
        "  a       1.5",
        "  bb    -0.25",
    ]


def test_newer_schema_is_refused_with_one_line(real_run, capsys, monkeypatch):
    from probes.runlog import UnsupportedSchemaError
    from probes.runlog import layout as runlog_format

    run_dir, _ = real_run
    current = runlog_format.SCHEMA_VERSION
    monkeypatch.setattr(runlog_format, "SCHEMA_VERSION", current - 1)  # this "older" reader meets a newer log
    with pytest.raises(UnsupportedSchemaError, match=rf"schema version {current}, newer than the {current - 1}"):
        open_run(run_dir)
    rc, out, err = cli(capsys, "summary", run_dir)
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probes summary: error: ") and "Upgrade probes" in lines[0]


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
        m = re.search(r"mean log10 p_first (\S+) ", line)
        assert m and printed(m[1], float(logp[step].mean())), line
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
    _, logged = open_run(run_dir).read("keyword/p_first")
    got = np.array([[float(x) for x in r[3 : 3 + len(names)]] for r in body]).astype(logged.dtype)
    np.testing.assert_array_equal(got, logged)  # exact: shortest round-trip text of the logged dtype
    np.testing.assert_array_equal(logged, p.astype(logged.dtype))  # and the log holds what the probe read
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
    assert rc == 0, err
    assert f"warning: Skipping shard {victim}" in err and f"skipped  {victim.name}" in out
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
