"""Issue 21, break 10: ``write()`` validates a record completely and refuses a bad one alone,
before buffering, so it can never make a flush fail for the records of other sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.core.records import Record
from probes.runlog import InvalidRecordError, RunLogError, RunWriter, open_run

GOOD = {"v": torch.tensor([1.0, 2.0])}

BAD = [
    (Record(1, "bad", GOOD, epoch=None), r"`record.epoch` of source 'bad' to be an int, got None.*Use -1"),  # type: ignore[arg-type]
    (Record(2**64, "bad", GOOD), r"`record.step` of source 'bad' to be in \[0, 2\*\*63 - 1\], got 1844674407370955161"),
    (Record(-3, "bad", GOOD), r"in \[0, 2\*\*63 - 1\], got -3"),
    (Record(True, "bad", GOOD), r"`record.step` of source 'bad' to be an int, got True"),  # type: ignore[arg-type]
    (Record(1.5, "bad", GOOD), r"to be an int, got 1.5"),  # type: ignore[arg-type]
    (Record(1, "bad", GOOD, epoch=2**63), r"`record.epoch` .* got 9223372036854775808"),
    (Record(1, "bad", {"v": torch.empty(2, device="meta")}), r"'bad/v' at step 1 is on the meta device"),
    (Record(1, "bad\ud800", GOOD), r"lone surrogate U\+D800"),
    (Record(1, "bad", {"v\ud800": torch.zeros(1)}), r"Metric name 'v\\ud800' .* lone surrogate"),
    (Record(1, "bad\x00", GOOD), r"control character U\+0000"),
    (Record(1, "", GOOD), r"it is empty"),
    (Record(1, 7, GOOD), r"got 7: it is a int"),  # type: ignore[arg-type]
    (Record(1, "bad", {"__step__": torch.zeros(1)}), r"reserved for the index"),
    (Record(1, "bad", {"v": torch.zeros(2, dtype=torch.complex64)}), r"dtype torch.complex64, which the run log does"),
    (Record(1, "bad", {"v": torch.zeros(3, 3).to_sparse()}), r"is a torch.sparse_coo tensor; emit a dense"),
    (Record(1, "bad", {"v": object()}), r"'bad/v' at step 1 is a object, not a tensor"),
    (Record(1, "bad", [1, 2]), r"to be a mapping of metric name to tensor, got list"),  # type: ignore[arg-type]
    ("not a record", r"Expected a probes.core.records.Record, got str"),
]


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("bad, message", BAD, ids=[m[:30] for _, m in BAD])
def test_a_bad_record_is_refused_alone(tmp_path, bad, message, background):
    with RunWriter(tmp_path, flush_every_n=3, background=background) as w:
        for s in range(4):
            w.write(Record(s, "good", {"v": torch.tensor([s, -s], dtype=torch.float32)}))
            w.write(Record(s, "other", {"n": torch.tensor(s)}, epoch=s))
            if s == 1:
                with pytest.raises(InvalidRecordError, match=message) as exc:
                    w.write(bad)
                assert isinstance(exc.value, ValueError) and isinstance(exc.value, RunLogError)
                assert w.n_buffered in (0, 1, 2)  # nothing of the bad record was buffered
        w.flush()  # every flush after the refusal succeeds
    run = open_run(tmp_path)
    assert run.sources() == ["good", "other"] and run.status == "finished"
    np.testing.assert_array_equal(run.read("good/v")[1], [[s, -s] for s in range(4)])
    np.testing.assert_array_equal(run.epochs("other"), np.arange(4))


def test_later_records_must_match_the_first_of_their_source(tmp_path):
    with RunWriter(tmp_path, flush_every_n=100) as w:
        w.write(Record(0, "s", {"a": torch.zeros(2), "b": torch.tensor(1)}))
        with pytest.raises(InvalidRecordError, match=r"'s/a' at step 1 is float64\[2\] on cpu, but earlier records"):
            w.write(Record(1, "s", {"a": torch.zeros(2, dtype=torch.float64), "b": torch.tensor(1)}))
        with pytest.raises(InvalidRecordError, match=r"'s/b' at step 1 is int64\[2\]"):
            w.write(Record(1, "s", {"a": torch.zeros(2), "b": torch.tensor([1, 2])}))
        with pytest.raises(InvalidRecordError, match=r"has metrics \['a'\], but earlier records of this source have"):
            w.write(Record(1, "s", {"a": torch.zeros(2)}))
        with pytest.raises(InvalidRecordError, match="meta device"):
            w.write(Record(1, "s", {"a": torch.zeros(2, device="meta"), "b": torch.tensor(1)}))
        w.write(Record(1, "s", {"b": torch.tensor(7), "a": [3.0, 4.0]}))  # order free, convertible values fine
        w.write(Record(2**63 - 1, "s", {"a": torch.ones(2), "b": torch.tensor(2)}, epoch=2**63 - 1))
    run = open_run(tmp_path)
    assert run.steps("s").tolist() == [0, 1, 2**63 - 1] and run.epochs("s").tolist() == [-1, -1, 2**63 - 1]
    np.testing.assert_array_equal(run.read("s/a")[1], [[0, 0], [3, 4], [1, 1]])
