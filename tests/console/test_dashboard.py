"""Dashboard as a record sink: validation, staging off the hot path, alerts, the plain summary line."""

from __future__ import annotations

import pytest
import torch

from probes.console import Dashboard
from probes.core.records import Record, RecordSink

from ._records import DESCRIBES, FakeClock, keyword_record


def test_is_a_record_sink() -> None:
    assert isinstance(Dashboard(), RecordSink)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_n": 0}, "Expected `top_n` to be an int >= 1, got 0."),
        ({"history": 1}, "Expected `history` to be an int >= 2, got 1."),
        ({"keyword_metric": "p"}, "Expected `keyword_metric` to be 'p_seq' or 'p_first', got 'p'."),
        ({"surprise_threshold": 1.5}, "Expected `surprise_threshold` in (0, 1), got 1.5."),
        ({"max_alerts": True}, "Expected `max_alerts` to be an int >= 1, got True."),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Dashboard(**kwargs)
    assert str(info.value) == message


def test_records_need_a_registered_source() -> None:
    d = Dashboard()
    with pytest.raises(KeyError, match=r"unregistered source 'keyword'; call register_source\('keyword', describe\)"):
        d.write(keyword_record(0))
    with pytest.raises(TypeError, match="Expected a probes.core.records.Record, got dict."):
        d.write({"step": 0})  # type: ignore[arg-type]


def test_register_source_validates_and_is_idempotent() -> None:
    d = Dashboard()
    with pytest.raises(ValueError, match="Expected `source` to be a non-empty string, got ''."):
        d.register_source("", {})
    with pytest.raises(ValueError, match=r"Expected `describe` of source 'k' to be a mapping .* got list."):
        d.register_source("k", [])  # type: ignore[arg-type]
    d.register_source("keyword", DESCRIBES["keyword"])
    d.register_source("keyword", DESCRIBES["keyword"])
    with pytest.raises(ValueError, match="already registered as 'KeywordProbe', not 'FormatProbe'"):
        d.register_source("keyword", DESCRIBES["format"])


def test_write_only_stages_and_drawing_ingests() -> None:
    d = Dashboard(clock=FakeClock())
    d.register_source("keyword", DESCRIBES["keyword"])
    record = keyword_record(0)
    d.write(record)
    state = d._states["keyword"]
    assert state.n_records == 0 and len(d._pending) == 1  # nothing converted on the training thread
    record.tensors["logp_seq"].fill_(0.0)  # a probe reusing its buffer does not change what was written
    d.__rich__()
    assert state.n_records == 1 and len(d._pending) == 0
    assert d.states["keyword"].top(1)[0][:2] == ("sand", pytest.approx(1e-4))


def test_pending_records_are_bounded() -> None:
    d = Dashboard(max_pending=2)
    d.register_source("keyword", DESCRIBES["keyword"])
    for step in range(3):
        d.write(keyword_record(step))
    assert len(d._pending) == 0  # the third write ingested the ready ones (CPU tensors are always ready)


def test_alert_api() -> None:
    d = Dashboard()
    with pytest.raises(ValueError, match="Expected alert `text` to be a non-empty string, got ' '."):
        d.alert(" ")
    with pytest.raises(ValueError, match=r"Expected alert `level` in \('error', 'warning', 'info'\), got 'fatal'."):
        d.alert("x", level="fatal")  # type: ignore[arg-type]
    d.alert("loss spike", step=7, level="warning", key="spike")
    d.alert("loss spike again", step=9, level="warning", key="spike")
    [a] = d.alerts
    assert (a.text, a.step, a.level, a.count) == ("loss spike again", 9, "warning", 2)


def test_record_time_drives_the_header() -> None:
    d = Dashboard(clock=None)
    d.register_source("keyword", DESCRIBES["keyword"])
    for step in range(3):
        r = keyword_record(step)
        d.write(Record(r.step, r.source, r.tensors, 0, {"time": 1000.0 + 4.0 * step}))
    h = d.header()
    assert (h.step, h.steps_per_s, h.elapsed) == (2, 0.25, 8.0)


def test_no_clock_shows_no_timing() -> None:
    d = Dashboard(clock=None)
    d.register_source("keyword", DESCRIBES["keyword"])
    d.write(keyword_record(0))
    d.update_progress(5, 1)
    h = d.header()
    assert (h.step, h.epoch, h.steps_per_s, h.elapsed) == (5, 1, None, None)


def test_summary_line(dashboard: Dashboard) -> None:
    # mean log10 p over [0.01, 0.1, 0.04, 0.25] = (-2 - 1 - 1.398 - 0.602) / 4 = -1.25
    assert dashboard.summary_line() == (
        "probes step 2 epoch 0 steps/s 0.5 elapsed 0:00:04"
        " | keyword: top sand ×100 (p_seq 0.0100), mean log10 p_seq -1.25"
        " | priming: 3 samples, 1 surprising, max s_prime ×4 (vermilion-sand)"
        " | format: boxed 96.9%, H 0.23 bits, COLLAPSED"
        " | alerts 1"
    )


def test_summary_line_before_data() -> None:
    d = Dashboard(clock=FakeClock())
    d.register_source("keyword", DESCRIBES["keyword"])
    assert d.summary_line() == "probes step — epoch — steps/s — elapsed —"


def test_cpu_records_stay_cpu_and_are_not_the_callers_tensors() -> None:
    from probes.console.host import stage

    record = keyword_record(1)
    staged = stage(record)
    assert staged.ready() and staged.event is None
    assert staged.record.tensors == {}  # device tensors are not kept alive by staging
    host = staged.to_record()
    assert host.step == 1 and host.source == "keyword"
    assert all(t.device.type == "cpu" for t in host.tensors.values())
    assert host.tensors["p_first"].data_ptr() != record.tensors["p_first"].data_ptr()
    assert torch.equal(host.tensors["rank"], record.tensors["rank"])
