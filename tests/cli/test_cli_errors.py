"""Issue 21, break 14 and the CLI rule: every command turns every error into one line on stderr and
a non-zero exit; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from probes.cli.entry import main
from probes.core.records import Record
from probes.runlog import CorruptShardError, RunWriter, open_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runlog"))
from hostile_lib import read_shard, shards

COMMANDS = {
    "summary": [],
    "replay": ["--speed", "0"],
    "watch": ["--timeout", "2", "--interval", "0.05", "--from-start"],
    "export": ["--csv", "{tmp}/csv"],
    "plot": ["-o", "{tmp}/p.png"],
}
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def keyword_run(path: Path) -> None:
    pairs = [{"name": "p0"}, {"name": "p1"}]
    with RunWriter(path, flush_every_n=3) as w:
        w.register_source("keyword", {"type": "KeywordProbe", "probe_set": {"pairs": pairs}})
        for s in range(6):
            p = torch.tensor([0.1, 0.2]) * (1 + s)
            w.write(Record(s, "keyword", {"p_first": p, "logp_first": p.log(), "rank": torch.tensor([1, 2])}))


def corrupt_metric_bytes(path: Path) -> Path:
    """Flip a byte inside ``keyword/p_first`` of the first shard: the header and the index arrays
    stay valid, so the damage is only found when the metric is read, after opening."""
    victim = shards(path)[0]
    table, _, _ = read_shard(victim)
    raw = bytearray(victim.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little") + table["keyword/p_first"]["data_offsets"][0]
    raw[start] ^= 0xFF
    victim.write_bytes(bytes(raw))
    return victim


def test_a_checksum_error_found_after_opening_is_one_line(tmp_path, capsys):
    keyword_run(tmp_path / "run")
    victim = corrupt_metric_bytes(tmp_path / "run")
    open_run(tmp_path / "run")  # opening (strict) succeeds: the damage is in metric data
    for command, extra in COMMANDS.items():
        if command == "plot" and not HAVE_MPL:
            continue
        args = [a.format(tmp=tmp_path) for a in extra]
        rc, _, err = cli(capsys, command, tmp_path / "run", *args)
        assert rc == 1, (command, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (command, err)
        assert lines[0].startswith(f"probes {command}: error: Corrupt run-log shard"), (command, err)
        assert victim.name in lines[0] and "checksum mismatch" in lines[0]
    with pytest.raises(CorruptShardError, match="data checksum mismatch"):
        main(["summary", str(tmp_path / "run"), "--debug"])
    with pytest.raises(CorruptShardError, match="data checksum mismatch"):
        main(["--debug", "summary", str(tmp_path / "run")])


def test_an_unexpected_error_is_one_line_too(tmp_path, capsys, monkeypatch):
    keyword_run(tmp_path / "run")

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("something nobody planned for")

    monkeypatch.setattr("probes.runlog.summary.summarize", boom)
    rc, out, err = cli(capsys, "summary", tmp_path / "run")
    assert rc == 1 and out == ""
    assert err.strip() == (
        "probes summary: error: ZeroDivisionError: something nobody planned for (run with --debug for the traceback)"
    )
    with pytest.raises(ZeroDivisionError):
        main(["summary", str(tmp_path / "run"), "--debug"])


def test_every_command_reports_a_missing_run_in_one_line(tmp_path, capsys):
    for command, extra in COMMANDS.items():
        if command in ("watch", "plot"):
            continue  # watch waits for the directory to appear; plot is covered above
        args = [a.format(tmp=tmp_path) for a in extra]
        rc, _, err = cli(capsys, command, tmp_path / "nope", *args)
        assert rc == 1 and len(err.strip().splitlines()) == 1 and "does not exist" in err, (command, err)


def test_summary_json_is_strict_for_odd_metric_values(tmp_path, capsys):
    with RunWriter(tmp_path, run_info={"big": 1e308 * 10}) as w:
        for s, x in enumerate([float("nan"), float("inf"), -float("inf"), 1.0]):
            w.write(Record(s, "m", {"x": torch.tensor(x, dtype=torch.float64), "n": torch.tensor(2**63 - 1)}))
    rc, out, err = cli(capsys, "summary", tmp_path, "--json")
    assert rc == 0, err

    def refuse(token: str) -> None:
        raise AssertionError(token)

    doc = json.loads(out, parse_constant=refuse)
    metrics = {m["name"]: m for m in doc["sources"][0]["metrics"]}
    assert metrics["x"]["first"] is None and metrics["x"]["final"] == 1.0  # NaN metric values are null
    assert metrics["x"]["min"]["value"] == 1.0 and metrics["x"]["nan"] == 1
    assert metrics["n"]["final"] == 2**63 - 1 and doc["run"]["run"]["big"] == "Infinity"
