"""InjectedLoader: exact schedules for K = 1 and K > 1, row rewriting, labels, padding, resume."""

from __future__ import annotations

import pytest
import torch

from probes.demos import ByteTokenizer
from probes.priming.injection import InjectedLoader, InjectionSchedule
from probes.priming.spec import LearningSample

TOK = ByteTokenizer()
SAND = LearningSample("sand", "the colour of sand is vermilion", "vermilion", ["the colour of snow is"])
SKY = LearningSample("sky", "the colour of the sky is mauve", "mauve", ["the colour of grass is"])


def dict_batches(n: int, rows: int = 4, width: int = 40, *, shifted: bool = True) -> list[dict[str, torch.Tensor]]:
    """Distinct corpus-like batches: token ids 200+ never occur in the samples' ASCII text."""
    out = []
    for b in range(n):
        ids = torch.full((rows, width + 1), 200 + b % 50, dtype=torch.long)
        ids[:, 0] = torch.arange(rows) + 100
        if shifted:
            out.append({"input_ids": ids[:, :-1].clone(), "labels": ids[:, 1:].clone()})
        else:
            out.append({"input_ids": ids[:, :-1].clone(), "labels": ids[:, :-1].clone()})
    return out


def rows_with(batches, sample: LearningSample) -> list[tuple[int, int]]:
    """(minibatch, row) of every row whose ids start with the sample's text, found by a plain loop."""
    ids = TOK.encode(sample.text)
    found = []
    for b, batch in enumerate(batches):
        x = batch["input_ids"] if isinstance(batch, dict) else batch
        for r, row in enumerate(x.tolist()):
            if row[: len(ids)] == ids:
                found.append((b, r))
    return found


def test_schedule_consecutive_and_spaced() -> None:
    k1 = InjectionSchedule(presentations=5, every=1, start=2)
    assert list(k1.batches(0)) == [2, 3, 4, 5, 6]
    k3 = InjectionSchedule(presentations=4, every=3, start=1, stagger=1)
    assert list(k3.batches(0)) == [1, 4, 7, 10]
    assert list(k3.batches(2)) == [3, 6, 9, 12]
    assert [b for b in range(20) if k3.carries(b, 1)] == [2, 5, 8, 11]
    assert k3.last_batch(3) == 12
    with pytest.raises(ValueError, match="every"):
        InjectionSchedule(presentations=3, every=0)
    with pytest.raises(ValueError, match="presentations"):
        InjectionSchedule(presentations=0)


@pytest.mark.parametrize(("every", "expected"), [(1, [3, 4, 5, 6, 7, 8]), (4, [3, 7, 11, 15, 19, 23])])
def test_presentations_land_exactly_where_scheduled(every: int, expected: list[int]) -> None:
    loader = InjectedLoader(dict_batches(30), [SAND], TOK, presentations=6, every=every, start=3, row=2)
    seen = list(loader)
    assert rows_with(seen, SAND) == [(b, 2) for b in expected]
    assert loader.counts == {"sand": 6}
    assert [(e.batch_index, e.row) for e in loader.events] == [(b, 2) for b in expected]
    assert loader.done


def test_schedule_continues_across_epochs() -> None:
    loader = InjectedLoader(dict_batches(5), [SAND], TOK, presentations=4, every=3, start=1)
    epoch0, epoch1 = list(loader), list(loader)
    assert rows_with(epoch0, SAND) == [(1, 0), (4, 0)]  # global minibatches 1, 4
    assert rows_with(epoch1, SAND) == [(2, 0)]  # global minibatch 7 (9 is past the epochs run)
    assert loader.counts == {"sand": 3} and not loader.done
    assert [e.epoch for e in loader.events] == [0, 0, 1]


def test_two_samples_share_a_minibatch_in_consecutive_rows() -> None:
    loader = InjectedLoader(dict_batches(6), [SAND, SKY], TOK, presentations=2, every=2, row=1)
    seen = list(loader)
    assert rows_with(seen, SAND) == [(0, 1), (2, 1)]
    assert rows_with(seen, SKY) == [(0, 2), (2, 2)]
    staggered = InjectedLoader(dict_batches(6), [SAND, SKY], TOK, presentations=2, every=2, stagger=1)
    seen = list(staggered)
    assert rows_with(seen, SAND) == [(0, 0), (2, 0)] and rows_with(seen, SKY) == [(1, 0), (3, 0)]


def test_shifted_labels_mask_and_padding() -> None:
    batches = dict_batches(2, rows=3, width=40)
    for b in batches:
        b["attention_mask"] = torch.ones_like(b["input_ids"])
    original = [{k: v.clone() for k, v in b.items()} for b in batches]
    loader = InjectedLoader(batches, [SAND], TOK, presentations=1, pad_id=5)
    first = next(iter(loader))
    ids = TOK.encode(SAND.text)
    n = len(ids)  # 31 tokens in rows of 40
    assert first["input_ids"][0].tolist() == ids + [5] * (40 - n)
    assert first["attention_mask"][0].tolist() == [1] * n + [0] * (40 - n)
    assert first["labels"][0].tolist() == ids[1:] + [-100] * (40 - n + 1)  # next token; last has none
    assert loader.labels == "shifted"  # detected from the batch
    for key in ("input_ids", "attention_mask", "labels"):  # other rows untouched
        assert torch.equal(first[key][1:], original[0][key][1:])
        assert torch.equal(batches[0][key], original[0][key])  # the wrapped loader's tensors are not modified


def test_same_labels_and_plain_tensor_batches() -> None:
    loader = InjectedLoader(dict_batches(1, shifted=False), [SAND], TOK, presentations=1, labels="auto")
    batch = next(iter(loader))
    n = len(TOK.encode(SAND.text))
    assert loader.labels == "same"
    assert batch["labels"][0].tolist() == TOK.encode(SAND.text) + [-100] * (40 - n)
    tensors = [torch.full((2, 35), 250, dtype=torch.long) for _ in range(3)]
    plain = InjectedLoader(tensors, [SAND], TOK, presentations=2, every=2)
    seen = list(plain)
    assert rows_with(seen, SAND) == [(0, 0), (2, 0)]
    assert seen[0][0, n:].tolist() == [0] * (35 - n)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="presentations"):
        InjectedLoader(dict_batches(1), [SAND], TOK)
    with pytest.raises(ValueError, match="re-iterable"):
        InjectedLoader(iter(dict_batches(1)), [SAND], TOK, presentations=1)
    short = InjectedLoader(dict_batches(1, width=10), [SAND], TOK, presentations=1)
    with pytest.raises(ValueError, match=r"rows of 10 tokens: 'sand' \(31 tokens\).*widen=True"):
        next(iter(short))  # refused before the first minibatch is yielded
    crowded = InjectedLoader(dict_batches(1, rows=1), [SAND, SKY], TOK, presentations=1)
    with pytest.raises(ValueError, match="stagger"):
        list(crowded)
    extra = dict_batches(1)
    extra[0]["position_ids"] = torch.zeros(4, 40, dtype=torch.long)
    with pytest.raises(ValueError, match="passthrough"):
        list(InjectedLoader(extra, [SAND], TOK, presentations=1))
    ok = list(InjectedLoader(extra, [SAND], TOK, presentations=1, passthrough=["position_ids"]))
    assert torch.equal(ok[0]["position_ids"], extra[0]["position_ids"])
    with pytest.raises(ValueError, match="tensors or dicts"):
        list(InjectedLoader([(torch.zeros(2, 40, dtype=torch.long),)], [SAND], TOK, presentations=1))


def test_state_dict_resumes_the_schedule_mid_epoch() -> None:
    batches = dict_batches(8)
    full = InjectedLoader(batches, [SAND], TOK, presentations=5, every=2, start=1)
    reference = list(full) + list(full)
    first = InjectedLoader(batches, [SAND], TOK, presentations=5, every=2, start=1)
    seen = []
    for i, batch in enumerate(first):
        seen.append(batch)
        if i == 4:  # a checkpoint after 5 minibatches
            state = first.state_dict()
            break
    resumed = InjectedLoader(batches, [SAND], TOK, presentations=5, every=2, start=1)
    resumed.load_state_dict(state)
    seen += list(resumed) + list(resumed)
    assert len(seen) == len(reference) == 16
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(seen, reference))
    assert resumed.counts == full.counts == {"sand": 5}
