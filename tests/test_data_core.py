"""SessionLog, Transitions and splits: hand-computed values, invariants and round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.data import (
    KIND_CLICK,
    KIND_PURCHASE,
    SessionLog,
    Transitions,
    last_items,
    return_to_go,
    split_by_session,
    split_leave_one_out,
)


def tiny_log() -> SessionLog:
    # sessions: [0 1 2] [3 4] [5 6 7 8]
    return SessionLog(
        offsets=[0, 3, 5, 9],
        items=[0, 1, 2, 3, 4, 5, 6, 7, 8],
        rewards=[0.2, 1.0, 0.2, 0.2, 0.2, 1.0, 0.2, 0.2, 0.2],
        kinds=[0, 1, 0, 0, 0, 1, 0, 0, 0],
        timestamps=np.arange(9.0),
        n_items=10,
        users=[7, 8, 9],
        name="tiny",
    )


@st.composite
def logs(draw):
    n_items = draw(st.integers(1, 12))
    lengths = draw(st.lists(st.integers(0, 7), min_size=0, max_size=8))
    n = sum(lengths)
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    rewards = draw(st.lists(st.sampled_from([0.0, 0.2, 0.5, 1.0]), min_size=n, max_size=n))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SessionLog(
        offsets=offsets,
        items=np.array(items, dtype=np.int64),
        rewards=np.array(rewards),
        kinds=(np.array(rewards) == 1.0).astype(np.int8),
        timestamps=np.arange(n, dtype=np.float64),
        n_items=n_items,
        users=np.arange(len(lengths)),
    )


def test_basic_views():
    log = tiny_log()
    assert log.n_sessions == 3 and log.n_events == 9 and log.pad_id == 10
    np.testing.assert_array_equal(log.lengths, [3, 2, 4])
    np.testing.assert_array_equal(log.session_of_event, [0, 0, 0, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(log.position_of_event, [0, 1, 2, 0, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(log.session(2), [5, 6, 7, 8])
    s = log.stats()
    assert (s["n_clicks"], s["n_purchases"], s["n_users"], s["max_length"]) == (7, 2, 3, 4)
    assert log.items.flags.writeable is False


def test_validation_errors_name_the_field():
    with pytest.raises(ValueError, match="item ids"):
        SessionLog(offsets=[0, 1], items=[5], rewards=[1], kinds=[0], timestamps=[0], n_items=3)
    with pytest.raises(ValueError, match="rewards"):
        SessionLog(offsets=[0, 2], items=[0, 1], rewards=[1], kinds=[0, 0], timestamps=[0, 0], n_items=3)
    with pytest.raises(ValueError, match="non-decreasing"):
        SessionLog(offsets=[0, 2, 1], items=[0, 1], rewards=[1, 1], kinds=[0, 0], timestamps=[0, 0], n_items=3)


def test_padded_right_and_left():
    ids, lengths = tiny_log().padded(3, "right")
    np.testing.assert_array_equal(ids, [[0, 1, 2], [3, 4, 10], [6, 7, 8]])
    np.testing.assert_array_equal(lengths, [3, 2, 3])
    ids, _ = tiny_log().padded(3, "left")
    np.testing.assert_array_equal(ids, [[0, 1, 2], [10, 3, 4], [6, 7, 8]])


def test_transitions_hand_computed():
    tr = tiny_log().transitions(state_len=2, discount=0.5)
    pad = 10
    np.testing.assert_array_equal(
        tr.state,
        [[pad, pad], [0, pad], [0, 1], [pad, pad], [3, pad], [pad, pad], [5, pad], [5, 6], [6, 7]],
    )
    np.testing.assert_array_equal(tr.state_len, [0, 1, 2, 0, 1, 0, 1, 2, 2])
    np.testing.assert_array_equal(tr.next_state[2], [1, 2])
    np.testing.assert_array_equal(tr.next_len, [1, 2, 2, 1, 2, 1, 2, 2, 2])
    np.testing.assert_array_equal(tr.done, [0, 0, 1, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(tr.t, [0, 1, 2, 0, 1, 0, 1, 2, 3])
    # session 0: R2 = .2, R1 = 1 + .5*.2 = 1.1, R0 = .2 + .5*1.1 = .75
    np.testing.assert_allclose(tr.rtg[:3], [0.75, 1.1, 0.2], rtol=1e-6)
    b = tr.batch(np.array([2, 8]))
    assert b["state"].dtype.is_floating_point is False and b["done"].tolist() == [1.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(logs(), st.sampled_from([1.0, 0.9, 0.5, 0.0]))
def test_return_to_go_matches_quadratic_definition(log, gamma):
    rtg = return_to_go(log.rewards, log.offsets, gamma)
    expected = np.zeros(log.n_events)
    for s in range(log.n_sessions):
        a, b = log.offsets[s], log.offsets[s + 1]
        for i in range(a, b):
            expected[i] = sum(gamma ** (j - i) * log.rewards[j] for j in range(i, b))
    np.testing.assert_allclose(rtg, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(logs(), st.integers(1, 5))
def test_transitions_state_is_history_window(log, L):
    tr = Transitions.from_log(log, state_len=L)
    assert len(tr) == log.n_events
    for i in range(len(tr)):
        s, t = tr.session[i], tr.t[i]
        hist = log.session(s)[:t][-L:]
        assert tr.state_len[i] == len(hist)
        np.testing.assert_array_equal(tr.state[i, : len(hist)], hist)
        assert (tr.state[i, len(hist) :] == log.pad_id).all()
        nxt = log.session(s)[: t + 1][-L:]
        np.testing.assert_array_equal(tr.next_state[i, : len(nxt)], nxt)


@settings(max_examples=40, deadline=None)
@given(logs(), st.integers(0, 100))
def test_session_split_partitions_sessions(log, seed):
    sp = split_by_session(log, seed=seed)
    assert sum(p.n_sessions for p in sp) == log.n_sessions
    assert sum(p.n_events for p in sp) == log.n_events
    users = np.concatenate([p.users for p in sp])
    assert sorted(users.tolist()) == sorted(log.users.tolist())
    assert split_by_session(log, seed=seed).train.users.tolist() == sp.train.users.tolist()


def test_session_split_fractions_and_seed():
    log = SessionLog(
        offsets=np.arange(101), items=np.zeros(100), rewards=np.ones(100), kinds=np.zeros(100),
        timestamps=np.zeros(100), n_items=1, users=np.arange(100),
    )
    sp = split_by_session(log, seed=3)
    assert [p.n_sessions for p in sp] == [80, 10, 10]
    assert split_by_session(log, seed=4).test.users.tolist() != sp.test.users.tolist()
    with pytest.raises(ValueError, match="fractions"):
        split_by_session(log, fractions=(0.5, 0.5, 0.5))


def test_leave_one_out_split():
    log = SessionLog(
        offsets=[0, 5, 7, 10], items=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], rewards=np.ones(10), kinds=np.zeros(10),
        timestamps=np.arange(10.0), n_items=10, users=[0, 1, 2],
    )
    sp = split_leave_one_out(log)
    assert sp.protocol == "loo"
    # user 1 has 2 events: all in train, not evaluated
    np.testing.assert_array_equal(sp.train.items, [0, 1, 2, 5, 6, 7])
    np.testing.assert_array_equal(sp.train.users, [0, 1, 2])
    np.testing.assert_array_equal(sp.valid.items, [0, 1, 2, 3, 7, 8])
    np.testing.assert_array_equal(sp.test.items, [0, 1, 2, 3, 4, 7, 8, 9])
    np.testing.assert_array_equal(sp.test.users, [0, 2])


def test_pandas_round_trip_and_order():
    log = tiny_log()
    df = log.to_pandas()
    back = SessionLog.from_pandas(df, n_items=log.n_items)
    for k in ("offsets", "items", "rewards", "kinds", "timestamps", "users"):
        np.testing.assert_array_equal(getattr(back, k), getattr(log, k))
    shuffled = df.sample(frac=1.0, random_state=0)
    back2 = SessionLog.from_pandas(shuffled.sort_values("session", kind="stable"), n_items=10)
    np.testing.assert_array_equal(back2.items, log.items)
    with pytest.raises(ValueError, match="missing column 't'.*from_frame"):
        SessionLog.from_pandas(pd.DataFrame({"session": [0], "item": [0]}), n_items=1)


def test_save_load_round_trip_without_pickle(tmp_path):
    log = tiny_log()
    import dataclasses

    log = dataclasses.replace(
        log, genres=np.eye(10, 3, dtype=np.float32), genre_names=("a", "b", "c"),
        item_ids=np.array([f"i{k}" for k in range(10)]), meta={"source": "tiny", "params": {"x": 1}},
    )
    p = log.save(tmp_path / "log.npz")
    back = SessionLog.load(p)
    assert back.meta == log.meta and back.genre_names == ("a", "b", "c") and back.name == "tiny"
    np.testing.assert_array_equal(back.genres, log.genres)
    np.testing.assert_array_equal(back.item_ids, log.item_ids)
    np.testing.assert_array_equal(back.offsets, log.offsets)
    with np.load(p, allow_pickle=False) as z:  # readable with pickle disabled
        assert "items" in z.files
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        SessionLog.load(tmp_path / "bad.npz")


def test_subset_prefix_window():
    log = tiny_log()
    sub = log.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.items, [5, 6, 7, 8, 0, 1, 2])
    np.testing.assert_array_equal(sub.users, [9, 7])
    np.testing.assert_array_equal(log.last_window(2).items, [1, 2, 3, 4, 7, 8])
    np.testing.assert_array_equal(log.truncate(3).lengths, [0, 0, 1])
    assert KIND_PURCHASE == 1 and KIND_CLICK == 0


def test_last_items_empty_rows():
    offsets = np.array([0, 0, 2, 2])
    ids, lengths = last_items(np.array([4, 5]), offsets[:-1], offsets[1:], 3, 9)
    np.testing.assert_array_equal(ids, [[9, 9, 9], [4, 5, 9], [9, 9, 9]])
    np.testing.assert_array_equal(lengths, [0, 2, 0])


def test_data_dir_rule_argument_then_nonempty_env_then_home(monkeypatch, tmp_path):
    from recgym.data import resolve_data_dir
    from recgym.data.cache import cache_dir
    from recgym.envs.common import load_env_split

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".cache" / "recgym"
    monkeypatch.setenv("RECGYM_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("~/x") == tmp_path / "home" / "x"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.setenv("RECGYM_DATA_DIR", "")  # empty = unset, never the current directory
    assert resolve_data_dir() == default
    monkeypatch.delenv("RECGYM_DATA_DIR")
    assert resolve_data_dir() == default
    monkeypatch.setenv("RECGYM_CACHE_DIR", "")
    assert cache_dir(tmp_path) == tmp_path / "processed"
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir(tmp_path) == tmp_path / "c"
    # the envs resolve the folder with the same rule: an empty variable points at the default folder
    monkeypatch.setenv("RECGYM_DATA_DIR", "")
    with pytest.raises(FileNotFoundError, match=str(default / "ml-100k")):
        load_env_split("ml-100k", data_dir=None, cache=False)


def test_load_split_protocol_overrides_the_source_default():
    from recgym.data import load_split

    kw = dict(n_sessions=60, n_users=30, n_items=20, world_seed=1)
    sess = load_split("synthetic", seed=0, **kw)
    loo = load_split("synthetic", seed=0, protocol="loo", **kw)
    assert sess.protocol == "session" and loo.protocol == "loo"
    # leave-one-out keeps every session in train and holds out the last event(s) of each
    assert loo.train.n_sessions == sess.train.n_sessions + sess.valid.n_sessions + sess.test.n_sessions
    with pytest.raises(ValueError, match="protocol"):
        load_split("synthetic", protocol="random", **kw)
