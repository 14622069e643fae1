"""`recgym.data.windows`: the one "last L items, padded" helper, against a per-row reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.data import SessionLog, Transitions
from recgym.data.windows import last_items, last_items_of_lists, last_items_of_rows

PAD = 50


def reference(seqs: list[list[int]], L: int, side: str, trim: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row by row: keep ``seq[-L:]`` and pad it on ``side`` to the width."""
    kept = [list(s)[max(0, len(s) - L):] if L else [] for s in seqs]
    width = max([1] + [len(k) for k in kept]) if trim else L
    rows = [k + [PAD] * (width - len(k)) if side == "right" else [PAD] * (width - len(k)) + k for k in kept]
    return np.array(rows, dtype=np.int64).reshape(len(seqs), width), np.array([len(k) for k in kept], dtype=np.int64)


sequences = st.lists(st.lists(st.integers(0, PAD - 1), max_size=12), max_size=8)  # empty and long histories
params = dict(L=st.integers(1, 6), side=st.sampled_from(["right", "left"]), trim=st.booleans())


def check(got: tuple, want: tuple) -> None:
    ids, lengths = (x.cpu().numpy() if isinstance(x, torch.Tensor) else x for x in got)
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(lengths, want[1])


@settings(max_examples=150, deadline=None)
@given(seqs=sequences, **params)
def test_last_items_of_flat_ranges_equals_per_row_reference(seqs, L, side, trim):
    sizes = np.array([len(s) for s in seqs], dtype=np.int64)
    ends = np.cumsum(sizes)
    flat = np.array([i for s in seqs for i in s], dtype=np.int32)  # int32 like SessionLog.items
    want = reference(seqs, L, side, trim)
    check(last_items(flat, ends - sizes, ends, L, PAD, side, trim), want)
    check(last_items(torch.from_numpy(flat).long(), ends - sizes, ends, L, PAD, side, trim), want)
    check(last_items_of_lists(seqs, L, PAD, side, trim), want)


@settings(max_examples=150, deadline=None)
@given(seqs=sequences, extra=st.integers(0, 3), **params)
def test_last_items_of_padded_rows_equals_per_row_reference(seqs, extra, L, side, trim):
    width = max([0] + [len(s) for s in seqs]) + extra
    rows = np.full((len(seqs), width), PAD, dtype=np.int64)
    for r, s in enumerate(seqs):
        rows[r, : len(s)] = s
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    want = reference(seqs, L, side, trim)
    check(last_items_of_rows(rows, lengths, L, PAD, side, trim), want)
    check(last_items_of_rows(torch.from_numpy(rows), torch.from_numpy(lengths), L, PAD, side, trim), want)


def test_windows_inside_sessions_and_transitions():
    # session 0 = [1, 2, 3, 4], session 1 = [], session 2 = [5]; windows end before event `cut`
    log = SessionLog(offsets=[0, 4, 4, 5], items=[1, 2, 3, 4, 5], rewards=np.ones(5), kinds=np.zeros(5),
                     timestamps=np.zeros(5), n_items=PAD)
    ids, lengths = last_items(log.items, [0, 0, 4, 4], [3, 0, 4, 5], 2, PAD)
    np.testing.assert_array_equal(ids, [[2, 3], [PAD, PAD], [PAD, PAD], [5, PAD]])
    np.testing.assert_array_equal(lengths, [2, 0, 0, 1])
    tr = Transitions.from_log(log, state_len=2)
    np.testing.assert_array_equal(tr.state, [[PAD, PAD], [1, PAD], [1, 2], [2, 3], [PAD, PAD]])
    np.testing.assert_array_equal(tr.next_state, [[1, PAD], [1, 2], [2, 3], [3, 4], [5, PAD]])
    assert tr.state.dtype == np.int32
    np.testing.assert_array_equal(log.padded(3, side="left")[0], [[2, 3, 4], [PAD] * 3, [PAD, PAD, 5]])


def test_no_items_gives_padding_and_bad_side_is_refused():
    ids, lengths = last_items(np.zeros(0, dtype=np.int32), [0, 0], [0, 0], 3, PAD)
    np.testing.assert_array_equal(ids, np.full((2, 3), PAD))
    np.testing.assert_array_equal(lengths, [0, 0])
    ids, _ = last_items_of_lists([], 3, PAD)
    assert ids.shape == (0, 3)
    with pytest.raises(ValueError, match="side"):
        last_items(np.arange(3), [0], [3], 2, PAD, side="middle")
