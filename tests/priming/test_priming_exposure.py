"""Exposure counting against a brute-force Python loop: padding, overlaps, varied pattern lengths."""

from __future__ import annotations

import pytest
import torch

from probes.priming.exposure import count_occurrences, occurrences_per_row, pack_patterns


def brute_force(rows: list[list[int]], valid: list[list[bool]], pattern: list[int]) -> list[int]:
    counts = []
    for row, ok in zip(rows, valid):
        n = 0
        for t in range(len(row) - len(pattern) + 1):
            if all(ok[t + k] and row[t + k] == pattern[k] for k in range(len(pattern))):
                n += 1
        counts.append(n)
    return counts


def test_overlapping_matches_are_all_counted() -> None:
    ids = torch.tensor([[1, 1, 1, 1, 1], [1, 2, 1, 2, 1]])
    patterns, lengths = pack_patterns([[1, 1], [1, 2, 1], [1, 1, 1, 1, 1, 1]])
    got = occurrences_per_row(ids, patterns, lengths)
    # "11" in 11111 -> 4 ; "121" in 12121 -> 2 (overlapping at 0 and 2) ; a 6-token pattern never fits
    assert got.tolist() == [[4, 0, 0], [0, 2, 0]]
    assert count_occurrences(ids, patterns, lengths).tolist() == [4, 2, 0]


def test_padding_by_mask_and_by_pad_id() -> None:
    ids = torch.tensor([[7, 8, 9, 7, 8], [7, 8, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    patterns, lengths = pack_patterns([[7, 8], [8, 0], [0, 0]])
    # with the mask: the trailing "7 8" of row 0 ends on padding, and nothing matches inside padding
    assert occurrences_per_row(ids, patterns, lengths, mask=mask).tolist() == [[1, 0, 0], [1, 0, 0]]
    # without any padding information the zeros are tokens: "0 0" occurs twice (overlapping)
    assert occurrences_per_row(ids, patterns, lengths).tolist() == [[2, 0, 0], [1, 1, 2]]
    assert occurrences_per_row(ids, patterns, lengths, pad_id=0).tolist() == [[2, 0, 0], [1, 0, 0]]


def test_matches_brute_force_on_random_batches() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, (9, 40), generator=g)  # a 3-symbol alphabet makes many (overlapping) hits
    lens = torch.randint(20, 41, (9,), generator=g)
    mask = (torch.arange(40)[None, :] < lens[:, None]).long()
    raw = [[0], [1, 2], [2, 2, 2], [0, 1, 0, 1], [1, 0, 2, 1, 0, 2], [2] * 12]
    patterns, lengths = pack_patterns(raw)
    got = occurrences_per_row(ids, patterns, lengths, mask=mask, max_elements=200)  # forces row chunks
    rows, valid = ids.tolist(), mask.bool().tolist()
    for p, pattern in enumerate(raw):
        assert got[:, p].tolist() == brute_force(rows, valid, pattern), pattern
    assert got.sum() > 50  # the comparison is not vacuous


def test_one_dimensional_ids_and_int32() -> None:
    patterns, lengths = pack_patterns([[3, 4]])
    assert count_occurrences(torch.tensor([3, 4, 3, 4], dtype=torch.int32), patterns, lengths).tolist() == [2]


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one pattern"):
        pack_patterns([])
    with pytest.raises(ValueError, match="Pattern #1 is empty"):
        pack_patterns([[1], []])
    with pytest.raises(ValueError, match="negative"):
        pack_patterns([[1, -1]])
    patterns, lengths = pack_patterns([[1]])
    with pytest.raises(ValueError, match="integer dtype"):
        count_occurrences(torch.zeros(2, 3), patterns, lengths)
    with pytest.raises(ValueError, match="mask"):
        count_occurrences(torch.zeros(2, 3, dtype=torch.long), patterns, lengths, mask=torch.ones(2, 4))
